"""``GET /metrics``: the figures an operator autoscales workers on."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from shared.config import Settings
from tests.conftest import jpeg_bytes


def _samples(http: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_jobs_and_waiting_messages(settings: Settings, s3) -> None:  # type: ignore[no-untyped-def]
    # A queue prefix no worker serves, so the message stays where the metric can see it.
    idle = settings.model_copy(update={"queue_prefix": f"metrics-{uuid.uuid4().hex[:6]}"})
    s3.put_object(Bucket=settings.input_bucket, Key="metrics/a.jpg", Body=jpeg_bytes())
    with TestClient(create_app(idle)) as http:
        before = _samples(http)
        queue = idle.queue_for("mirnet")
        depth = ("darkroom_queue_messages", (("family", "mirnet"), ("queue", queue)))
        queued = ("darkroom_jobs", (("status", "queued"),))
        assert before[depth] == 0
        created = http.post("/v1/jobs", json={"model": "mirnet-lol", "input_key": "metrics/a.jpg"})
        assert created.status_code == 202
        after = _samples(http)
        assert after[depth] == 1
        assert after[queued] >= 1
        assert ("darkroom_webhook_deliveries", (("status", "failed"),)) in after
        http.delete(f"/v1/jobs/{created.json()['id']}")  # leave nothing queued behind
