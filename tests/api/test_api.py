"""API behaviour that needs no worker: validation, errors, listing, readiness, the no-torch rule."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared import jobs
from shared.config import Settings
from shared.db.engine import session_scope
from shared.errors import ErrorCode
from tests.services import REPO


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"input_key": "a.jpg", "options": {"sharpen": 3}}, 422, "invalid_request"),
        ({"input_key": "a.jpg", "options": {"jpeg_quality": 0}}, 422, "invalid_request"),
        ({"input_key": ""}, 422, "invalid_request"),
        ({"model": "mirnet-lol"}, 422, "invalid_request"),
        ({"input_key": "a.jpg", "model": "unknown"}, 422, "model_not_found"),
        ({"input_key": "a.jpg", "model": "zero-dce"}, 403, "model_not_allowed"),
        ({"input_key": "a.jpg", "model": "light-curve"}, 403, "model_not_allowed"),
        ({"input_key": "../../etc/passwd"}, 422, "invalid_request"),
        ({"input_key": "a.jpg", "input_bucket": "someone-elses"}, 403, "input_not_allowed"),
    ],
)
def test_invalid_jobs_get_4xx_with_a_json_reason(
    client: TestClient, body: dict, status: int, code: str
) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["message"]


def test_malformed_json_and_bad_multipart(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    malformed = response.json()
    assert malformed["code"] == "invalid_request" and malformed["message"]
    # pydantic's documented error type, not its wording (which names the JSON parser's error)
    assert [detail["type"] for detail in malformed["details"]] == ["json_invalid"], malformed
    response = client.post("/v1/jobs", files={"other": ("x.jpg", b"x")})
    assert response.status_code == 422 and "file" in response.json()["message"]
    response = client.post("/v1/jobs", files={"file": ("x.jpg", b"x")}, data={"options": "{oops"})
    assert response.status_code == 422 and "options" in response.json()["message"]


def test_unknown_ids_are_404(client: TestClient) -> None:
    assert client.get(f"/v1/jobs/{uuid.uuid4()}").json()["code"] == "job_not_found"
    assert client.delete(f"/v1/jobs/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/v1/batches/{uuid.uuid4()}").status_code == 404
    assert client.get("/v1/jobs/not-a-uuid").status_code == 422


def test_batch_validation(client: TestClient, settings: Settings) -> None:
    assert client.post("/v1/batches", json={"keys": []}).status_code == 422
    both = client.post("/v1/batches", json={"keys": ["a.jpg"], "prefix": "p/"})
    assert both.status_code == 422 and "exactly one" in both.json()["message"]
    empty = client.post("/v1/batches", json={"prefix": f"nothing-here-{uuid.uuid4()}/"})
    assert empty.status_code == 422 and "no objects" in empty.json()["message"]


def test_listing_is_cursor_paginated_and_filtered(client: TestClient, settings: Settings) -> None:
    keys = [f"page/{i}.jpg" for i in range(5)]
    batch = client.post("/v1/batches", json={"keys": keys}).json()
    assert batch["total"] == 5 and batch["counts"]["queued"] + batch["counts"]["running"] >= 0
    seen: list[str] = []
    cursor = None
    while True:
        params = {"batch_id": batch["id"], "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params).json()
        seen += [job["input_key"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(keys) and len(seen) == 5
    assert client.get("/v1/jobs", params={"cursor": "garbage!"}).status_code == 422
    assert client.get("/v1/jobs", params={"status": "exploded"}).status_code == 422


def test_models_health_and_readiness(client: TestClient, settings: Settings) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()}
    assert models["mirnet-lol"]["queue"] == settings.queue_for("mirnet")
    assert models["zero-dce"]["noncommercial"] and not models["zero-dce"]["allowed"]
    assert "CC BY-NC" in models["zero-dce"]["licence"]
    assert models["sgz"]["allowed"] and not models["sgz"]["noncommercial"]
    assert models["sgz"]["urls"] and models["sgz"]["parameters"] == 10_561
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "storage": "ok", "broker": "ok"}
    assert "/v1/jobs" in client.get("/openapi.json").json()["paths"]


def test_readiness_reports_an_unreachable_broker(settings: Settings, s3: object) -> None:
    broken = settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    with TestClient(create_app(broken)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"].startswith("error")
    assert ready.json()["checks"]["database"] == "ok"


def test_the_api_process_never_imports_torch() -> None:
    code = (
        "import sys; from api.app import create_app; from cli import app; "
        "create_app(); assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'workers' not in sys.modules, 'worker code imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_a_job_is_accepted_and_kept_while_the_broker_is_down(
    settings: Settings, s3: object
) -> None:
    import time

    broken = settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    with TestClient(create_app(broken)) as client:
        start = time.monotonic()
        response = client.post("/v1/jobs", json={"input_key": "later.jpg", "model": "mirnet-lol"})
        elapsed = time.monotonic() - start
        assert response.status_code == 202, response.text
        assert client.get(response.headers["location"]).json()["status"] == "queued"
    assert elapsed < 15  # bounded retries, then the reconciler's job


def test_oversize_uploads_are_413_and_names_are_made_safe(settings: Settings, s3: object) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 1000})
    with TestClient(create_app(small)) as http:
        big = http.post("/v1/jobs", files={"file": ("big.jpg", b"x" * 1001, "image/jpeg")})
        assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
        assert "/v1/uploads" in big.json()["message"]
        for name in ("ночь 夜.jpg", "../../etc/passwd.jpg", "..\\..\\win.jpg", "\x00.jpg"):
            made = http.post("/v1/jobs", files={"file": (name, b"tiny", "image/jpeg")})
            assert made.status_code == 202, (name, made.text)
            key = made.json()["input_key"]
            assert ".." not in key and "\\" not in key and "\x00" not in key
            assert key.startswith("uploads/") and key.count("/") == 2, key


def test_batch_keys_are_checked_one_by_one(client: TestClient) -> None:
    response = client.post("/v1/batches", json={"keys": ["ok.jpg", "a/../../b.jpg"]})
    assert response.status_code == 422 and "b.jpg" in response.json()["message"]
    response = client.post("/v1/batches", json={"keys": ["ok.jpg"], "input_bucket": "other"})
    assert response.status_code == 403


def _failed_job(settings: Settings) -> str:
    """A failed job, made without a worker: one a person may send back to be redone."""
    with session_scope(settings.database_url) as session:
        job = jobs.create_job(
            session,
            model="mirnet-lol",
            input_bucket=settings.input_bucket,
            input_key=f"gone-{uuid.uuid4()}.jpg",
            options={},
        )
        assert jobs.claim(session, job.id, "test")
        assert jobs.fail(session, job.id, code=ErrorCode.input_not_found, message="gone")
        return str(job.id)


def _post_json(client: TestClient, url: str, body: str) -> httpx.Response:
    """``body`` sent as written: Python's json and Starlette accept NaN and Infinity, which a
    client's encoder would refuse to write."""
    return client.post(url, content=body.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("threshold", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_review_threshold_that_is_not_a_finite_number_is_refused(
    client: TestClient, settings: Settings, threshold: str
) -> None:
    """For a job, a batch and a redo alike, with the 422 a threshold that is not a number gets:
    a NaN would never trip its rule, and the database cannot store NaN or an infinity."""
    options = f'{{"review": {{"still_dark": {threshold}}}}}'
    answers = {
        "job": _post_json(client, "/v1/jobs", f'{{"input_key": "a.jpg", "options": {options}}}'),
        "batch": _post_json(client, "/v1/batches", f'{{"keys": ["a.jpg"], "options": {options}}}'),
        "redo": _post_json(
            client,
            f"/v1/jobs/{_failed_job(settings)}/review",
            f'{{"decision": "redo", "options": {options}}}',
        ),
    }
    for what, response in answers.items():
        assert response.status_code == 422, (what, response.text)
        body = response.json()
        assert body["code"] == "invalid_request" and "still_dark" in body["message"], what
        assert all("review" in detail["loc"] for detail in body["details"]), (what, body)


def test_a_redo_with_an_empty_model_is_refused(client: TestClient, settings: Settings) -> None:
    """An empty name is a mistake, not "the same model again" (which leaving it out means)."""
    job_id = _failed_job(settings)
    refused = client.post(f"/v1/jobs/{job_id}/review", json={"decision": "redo", "model": ""})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "invalid_request"
    assert [d["loc"] for d in refused.json()["details"]] == [["body", "model"]]
    assert client.get(f"/v1/jobs/{job_id}").json()["review"]["decision"] is None
