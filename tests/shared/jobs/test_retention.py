"""Retention: old results (and the API uploads they came from) are deleted, nothing else."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from shared import jobs
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import Job, utcnow
from shared.jobs import retention
from shared.storage import make_storage
from shared.storage.keys import upload_key


def _finished_job(settings: Settings, s3, input_key: str, age_days: float) -> Job:  # type: ignore[no-untyped-def]
    """A succeeded job with its result object, finished ``age_days`` ago."""
    sessions = session_factory(settings.database_url)
    s3.put_object(Bucket=settings.input_bucket, Key=input_key, Body=b"input")
    with sessions.begin() as session:
        job = jobs.create_job(
            session,
            model="mirnet-lol",
            input_bucket=settings.input_bucket,
            input_key=input_key,
            options={},
        )
        # Never picked up by the session worker: nothing sends it, and it leaves 'queued' now.
        assert jobs.claim(session, job.id, "test")
        out_key = f"results/{job.id}/out.jpg"
        previews = (f"previews/{job.id}/before.jpg", f"previews/{job.id}/after.jpg")
        for key in (out_key, *previews):
            s3.put_object(Bucket=settings.output_bucket, Key=key, Body=b"result")
        assert jobs.succeed(
            session,
            job.id,
            output_bucket=settings.output_bucket,
            output_key=out_key,
            timings={},
            previews=previews,
        )
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(finished_at=utcnow() - timedelta(days=age_days))
        )
    with sessions() as session:
        return jobs.get_job(session, job.id)


def _exists(s3, bucket: str, key: str) -> bool:  # type: ignore[no-untyped-def]
    return s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 1


def test_cleanup_deletes_old_results_and_uploads_only(
    settings: Settings, s3, client: TestClient
) -> None:  # type: ignore[no-untyped-def]
    keep_days = settings.model_copy(update={"result_retention_days": 7})
    uploaded_key = upload_key("old.jpg")
    old_upload = _finished_job(settings, s3, uploaded_key, age_days=8)
    old_own = _finished_job(settings, s3, "archive/1999/old.jpg", age_days=8)
    recent = _finished_job(settings, s3, upload_key("new.jpg"), age_days=1)

    sessions = session_factory(settings.database_url)
    storage = make_storage(settings)
    assert retention.cleanup_once(sessions, storage, keep_days) >= 2
    while retention.cleanup_once(sessions, storage, keep_days):
        pass

    out = settings.output_bucket
    assert not _exists(s3, out, old_upload.output_key)
    assert not _exists(s3, out, old_own.output_key)
    assert _exists(s3, out, recent.output_key)
    for job, kept in ((old_upload, False), (old_own, False), (recent, True)):
        for preview in (job.before_preview_key, job.after_preview_key):
            assert preview and _exists(s3, out, preview) == kept  # previews go with the result
    assert not _exists(s3, settings.input_bucket, uploaded_key)  # Darkroom's upload: gone
    assert _exists(s3, settings.input_bucket, "archive/1999/old.jpg")  # the owner's photo: kept
    assert _exists(s3, settings.input_bucket, recent.input_key)

    body = client.get(f"/v1/jobs/{old_own.id}").json()
    assert body["status"] == "succeeded"  # the record stays
    assert body["result"]["url"] is None  # but no link to a deleted object
    assert body["result"]["deleted_at"]
    assert body["previews"] is None
    assert client.get(f"/v1/jobs/{recent.id}").json()["result"]["url"]


def test_retention_zero_keeps_everything(settings: Settings, s3) -> None:  # type: ignore[no-untyped-def]
    old = _finished_job(settings, s3, "archive/keep.jpg", age_days=3650)
    sessions = session_factory(settings.database_url)
    assert retention.cleanup_once(sessions, make_storage(settings), settings) == 0
    assert _exists(s3, settings.output_bucket, old.output_key)
