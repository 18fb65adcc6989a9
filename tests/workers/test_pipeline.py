"""The pipeline's error handling, run directly (no broker) against real services."""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy.orm import Session

from imaging import quality
from shared import jobs
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import JobStatus
from shared.errors import RetryLater, StorageError
from tests.conftest import jpeg_bytes
from workers.context import WorkerContext
from workers.pipeline import backoff, output_key, run_job


def _new_job(settings: Settings, key: str, model: str = "mirnet-lol") -> uuid.UUID:
    with session_factory(settings.database_url).begin() as session:
        job = jobs.create_job(
            session, model=model, input_bucket=settings.input_bucket, input_key=key, options={}
        )
        return job.id


def _job(settings: Settings, job_id: uuid.UUID):  # type: ignore[no-untyped-def]
    with Session(session_factory(settings.database_url).kw["bind"]) as session:
        return jobs.get_job(session, job_id)


def test_transient_storage_errors_retry_then_fail_with_a_clear_code(
    settings: Settings, s3: object
) -> None:
    # A real connection to a port where nothing listens: a retryable StorageError each time.
    dead = settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9", "max_attempts": 3})
    ctx = WorkerContext.build(dead)
    job_id = _new_job(settings, "anything.jpg")
    for attempt in (1, 2):
        with pytest.raises(RetryLater) as retry:
            run_job(job_id, ctx)
        assert retry.value.cause.code == "storage_error"
        job = _job(settings, job_id)
        assert job.status == JobStatus.queued and job.attempts == attempt
        assert job.error_code == "storage_error"  # the last error stays visible
    assert run_job(job_id, ctx) == JobStatus.failed
    job = _job(settings, job_id)
    assert job.status == JobStatus.failed and job.attempts == 3
    assert job.error_code == "storage_error"
    assert "gave up after 3 attempts" in (job.error_message or "")


def test_a_redelivered_message_does_not_redo_a_finished_job(
    settings: Settings, s3, model_dir: object
) -> None:
    s3.put_object(Bucket=settings.input_bucket, Key="twice.jpg", Body=jpeg_bytes())
    ctx = WorkerContext.build(settings)
    job_id = _new_job(settings, "twice.jpg")
    assert run_job(job_id, ctx) == JobStatus.succeeded
    assert run_job(job_id, ctx) is None
    job = _job(settings, job_id)
    assert job.attempts == 1 and job.status == JobStatus.succeeded
    assert job.output_key == output_key(job, ".jpg")


def test_unavailable_model_fails_its_job_only(settings: Settings, s3, tmp_path) -> None:
    s3.put_object(Bucket=settings.input_bucket, Key="nomodel.jpg", Body=jpeg_bytes())
    ctx = WorkerContext.build(settings.model_copy(update={"model_dir": tmp_path}))
    job_id = _new_job(settings, "nomodel.jpg")
    assert run_job(job_id, ctx) == JobStatus.failed
    job = _job(settings, job_id)
    assert job.error_code == "model_unavailable"
    assert "mirnet-lol" in (job.error_message or "")
    assert str(tmp_path) not in (job.error_message or "")  # server paths go to the log only


def test_backoff_grows_exponentially_with_jitter_and_a_cap(settings: Settings) -> None:
    tuned = settings.model_copy(update={"retry_backoff_s": 1.0, "retry_backoff_max_s": 8.0})
    assert 0.5 <= backoff(tuned, 1) <= 1.0
    assert 2.0 <= backoff(tuned, 3) <= 4.0
    assert 4.0 <= backoff(tuned, 10) <= 8.0
    assert len({backoff(tuned, 5) for _ in range(20)}) > 1


def test_soft_time_limit_fails_the_job_at_its_next_check(settings: Settings, s3) -> None:
    s3.put_object(Bucket=settings.input_bucket, Key="slow.jpg", Body=jpeg_bytes())
    ctx = WorkerContext.build(settings.model_copy(update={"job_soft_time_limit_s": -1}))
    job_id = _new_job(settings, "slow.jpg")
    assert run_job(job_id, ctx) == JobStatus.failed
    job = _job(settings, job_id)
    assert job.error_code == "time_limit_exceeded"
    assert job.download_s is not None  # the stage that ran is still recorded


def test_weights_are_fetched_from_the_model_store_once(
    settings: Settings, s3, model_dir, tmp_path
) -> None:
    bucket = f"models-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="models/mirnet-lol.pt",
        Body=(model_dir / "mirnet-lol.pt").read_bytes(),
    )
    s3.put_object(Bucket=settings.input_bucket, Key="store.jpg", Body=jpeg_bytes())
    cache = tmp_path / "cache"
    ctx = WorkerContext.build(
        settings.model_copy(update={"model_dir": cache, "model_bucket": bucket})
    )
    job_id = _new_job(settings, "store.jpg")
    assert run_job(job_id, ctx) == JobStatus.succeeded
    assert (cache / "mirnet-lol.pt").read_bytes() == (model_dir / "mirnet-lol.pt").read_bytes()


def test_a_chain_runs_every_step_on_the_pixels_without_reencoding(
    settings: Settings, s3, model_dir
) -> None:
    import io

    import numpy as np
    from PIL import Image

    s3.put_object(Bucket=settings.input_bucket, Key="chain.png", Body=_png_bytes())
    ctx = WorkerContext.build(settings)
    single, chained = (
        _new_job(settings, "chain.png"),
        _new_job(settings, "chain.png", model="mirnet-lol+mirnet-lol"),
    )
    assert run_job(single, ctx) == JobStatus.succeeded
    assert run_job(chained, ctx) == JobStatus.succeeded

    def result(job_id: uuid.UUID) -> np.ndarray:
        job = _job(settings, job_id)
        body = s3.get_object(Bucket=job.output_bucket, Key=job.output_key)["Body"].read()
        return np.asarray(Image.open(io.BytesIO(body)), dtype=np.float32)

    once = result(single)
    twice = result(chained)
    assert once.shape == twice.shape == (24, 32, 3)
    assert np.abs(once - twice).mean() > 0.5  # the second step really ran


def test_unknown_steps_and_tasks_are_refused_at_submission(client, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    bad_step = client.post("/v1/jobs", json={"input_key": "a.png", "model": "mirnet-lol+nope"})
    assert bad_step.status_code == 422 and bad_step.json()["code"] == "model_not_found"
    bad_task = client.post("/v1/jobs", json={"input_key": "a.png", "model": "ipt-pretrain:sr-x9"})
    assert bad_task.status_code == 422 and "sr-x3" in bad_task.json()["message"]
    preset = client.post("/v1/jobs", json={"input_key": "a.png", "model": "handheld-night"})
    assert preset.status_code == 202 and preset.json()["model"] == "handheld-night"


def _png_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    pixels = (np.random.default_rng(3).random((24, 32, 3)) * 120).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def _failures(model: str, error: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "darkroom_worker_measure_failures_total", {"model": model, "error": error}
    )
    return value or 0.0


def test_a_measure_that_raises_keeps_the_restored_photo(
    settings: Settings, s3, model_dir: object, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    # What a worker without PyWavelets met on every job: scikit-image's noise estimate raising.
    def broken(*args: object) -> object:
        raise ImportError("PyWavelets is not installed")

    monkeypatch.setattr(quality, "measure", broken)
    s3.put_object(Bucket=settings.input_bucket, Key="measure.jpg", Body=jpeg_bytes())
    # Thresholds every result would trip, had it been measured.
    tripping = {"still_dark": 1.0, "input_well_exposed": 0.0}
    job_id = _new_job(settings, "measure.jpg")
    with session_factory(settings.database_url).begin() as session:
        jobs.get_job(session, job_id).options = {"review": tripping}
    before = _failures("mirnet-lol", "ImportError")

    with caplog.at_level(logging.WARNING, logger="workers.pipeline"):
        assert run_job(job_id, WorkerContext.build(settings)) == JobStatus.succeeded

    job = _job(settings, job_id)
    assert job.status == JobStatus.succeeded and job.error_code is None
    assert job.output_key == output_key(job, ".jpg")
    s3.head_object(Bucket=settings.output_bucket, Key=job.output_key)  # the photo is stored
    assert job.quality is None
    assert job.measure_error is not None and "PyWavelets is not installed" in job.measure_error
    assert not job.flagged and not job.review_reasons  # no rule read missing figures
    assert job.before_preview_key is None and job.after_preview_key is None
    assert _failures("mirnet-lol", "ImportError") == before + 1
    logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(job_id) in r.getMessage() and r.exc_info for r in logged)


def test_previews_that_cannot_be_stored_keep_the_photo_and_its_signals(
    settings: Settings, s3, model_dir: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put_object(Bucket=settings.input_bucket, Key="nopreview.jpg", Body=jpeg_bytes())
    ctx = WorkerContext.build(settings)
    put = ctx.storage.put

    def refuse_previews(bucket: str, key: str, data: bytes, content_type: str) -> None:
        if "previews/" in key:
            raise StorageError("the store refused the preview")
        put(bucket, key, data, content_type)

    monkeypatch.setattr(ctx.storage, "put", refuse_previews)
    job_id = _new_job(settings, "nopreview.jpg")
    assert run_job(job_id, ctx) == JobStatus.succeeded
    job = _job(settings, job_id)
    assert job.quality is not None and job.quality["result"]["mean_luma"] > 0
    assert job.before_preview_key is None
    assert job.measure_error is not None and "refused the preview" in job.measure_error
