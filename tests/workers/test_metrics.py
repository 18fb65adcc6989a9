"""A real worker's Prometheus metrics, scraped over HTTP after it ran a job."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared import jobs
from shared.db.engine import session_factory
from shared.db.tables import JobStatus
from tests import services
from tests.conftest import jpeg_bytes, settings_from_env
from tests.faults import submit_photos

STAGES = ("download", "decode", "restore", "measure", "encode", "upload")


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample the worker serves: (name, labels) -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_workers_metrics_count_the_job_it_ran(
    service_env: dict[str, str], s3: object, tmp_path: Path
) -> None:
    port = services.free_port()
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-metrics-{uuid.uuid4().hex[:6]}",
        "DARKROOM_WORKER_METRICS_PORT": str(port),
    }
    settings = settings_from_env(env)
    worker = services.start_worker(env, tmp_path / "worker.log")
    try:
        before = scrape(port)
        assert ("darkroom_worker_jobs_total", frozenset()) not in before  # labelled only
        [job_id] = submit_photos(env, s3, [("metrics/a.jpg", jpeg_bytes((64, 48), seed=3))])
        sessions = session_factory(settings.database_url)

        def status() -> JobStatus:
            with sessions() as session:
                return jobs.get_job(session, job_id).status

        assert services.wait_until(status, 120, until=lambda s: s.finished) == JobStatus.succeeded
        after = scrape(port)
    finally:
        services.stop(worker)

    model = frozenset({("model", "mirnet-lol")})
    assert after[("darkroom_worker_jobs_total", model | {("outcome", "succeeded")})] == 1
    for stage in STAGES:
        labels = model | {("stage", stage)}
        assert after[("darkroom_worker_stage_seconds_count", labels)] == 1, stage
        assert after[("darkroom_worker_stage_seconds_sum", labels)] > 0, stage
    assert after[("darkroom_worker_model_load_seconds_count", model)] == 1
    assert after[("darkroom_worker_restored_megapixels_total", model)] == 64 * 48 / 1e6
    assert after[("darkroom_worker_restore_megapixels_per_second_count", model)] == 1
