"""Idempotency-Key on jobs and batches: a retried submission gets the first answer and adds
nothing; the same key with a different request is refused, never answered with the first."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import Batch, Job
from tests.conftest import jpeg_bytes


def _count(settings: Settings, table: type[Job] | type[Batch]) -> int:
    with session_factory(settings.database_url)() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _prefix_with_photos(s3, settings: Settings, count: int) -> str:  # type: ignore[no-untyped-def]
    prefix = f"idem-{uuid.uuid4().hex[:8]}/"
    for i in range(count):
        s3.put_object(Bucket=settings.input_bucket, Key=f"{prefix}{i}.jpg", Body=jpeg_bytes())
    return prefix


def test_the_same_key_and_body_returns_the_same_batch_and_enqueues_nothing(
    client: TestClient, s3, settings: Settings
) -> None:
    prefix = _prefix_with_photos(s3, settings, 3)
    body = {"prefix": prefix, "model": "mirnet-lol"}
    headers = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    first = client.post("/v1/batches", json=body, headers=headers)
    jobs_after_first, batches_after_first = _count(settings, Job), _count(settings, Batch)
    again = client.post("/v1/batches", json=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == f"/v1/batches/{first.json()['id']}"
    assert _count(settings, Batch) == batches_after_first
    assert _count(settings, Job) == jobs_after_first
    other = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "another"})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]


def test_a_batch_key_reused_for_another_request_is_refused(
    client: TestClient, s3, settings: Settings
) -> None:
    headers = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}
    first_prefix = _prefix_with_photos(s3, settings, 1)
    first = client.post("/v1/batches", json={"prefix": first_prefix}, headers=headers)
    assert first.status_code == 202
    before = _count(settings, Job)
    other = client.post(
        "/v1/batches", json={"prefix": _prefix_with_photos(s3, settings, 1)}, headers=headers
    )
    assert other.status_code == 422
    refused = other.json()
    assert refused["code"] == "idempotency_key_reused"
    assert headers["Idempotency-Key"] in refused["message"]
    assert first.json()["id"] in refused["message"]
    assert _count(settings, Job) == before


def test_a_job_key_reused_for_another_input_is_refused_and_the_same_body_still_answers(
    client: TestClient, s3, settings: Settings
) -> None:
    prefix = _prefix_with_photos(s3, settings, 2)
    headers = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = client.post("/v1/jobs", json={"input_key": f"{prefix}0.jpg"}, headers=headers)
    assert first.status_code == 202
    other = client.post("/v1/jobs", json={"input_key": f"{prefix}1.jpg"}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    options = client.post(
        "/v1/jobs",
        json={"input_key": f"{prefix}0.jpg", "options": {"output_format": "png"}},
        headers=headers,
    )
    assert options.status_code == 422
    same = client.post("/v1/jobs", json={"input_key": f"{prefix}0.jpg"}, headers=headers)
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]


def test_a_retried_multipart_upload_is_the_same_request(client: TestClient) -> None:
    headers = {"Idempotency-Key": f"upload-{uuid.uuid4()}"}
    photo = jpeg_bytes(seed=7)
    sent = [
        client.post("/v1/jobs", files={"file": ("night.jpg", photo, "image/jpeg")}, headers=headers)
        for _ in range(2)
    ]
    assert [r.status_code for r in sent] == [202, 200]
    assert sent[0].json()["id"] == sent[1].json()["id"]
    changed = client.post(
        "/v1/jobs",
        files={"file": ("night.jpg", jpeg_bytes(seed=8), "image/jpeg")},
        headers=headers,
    )
    assert changed.status_code == 422 and changed.json()["code"] == "idempotency_key_reused"
