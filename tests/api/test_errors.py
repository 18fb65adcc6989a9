"""What the API answers when something breaks: JSON with a stable code, never a plain-text
500, and a request id that ties the answer to the log line."""

from __future__ import annotations

import logging
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from shared.config import Settings
from shared.errors import ErrorCode

UNREACHABLE_DB = "postgresql+psycopg2://postgres@127.0.0.1:1/darkroom?connect_timeout=2"


def _client(app: FastAPI) -> TestClient:
    # raise_server_exceptions=False: see what a real client gets, not the test's traceback.
    return TestClient(app, raise_server_exceptions=False)


def test_an_unexpected_error_is_json_internal_error_with_the_request_id_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    def broken() -> None:
        raise RuntimeError("a bug that nothing translated")

    app.add_api_route("/v1/boom", broken)
    with caplog.at_level(logging.ERROR, logger="api"), _client(app) as http:
        response = http.get("/v1/boom", headers={"X-Request-ID": "req-1234"})
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert "req-1234" in body["message"]
    assert "a bug that nothing translated" not in body["message"]  # no internals leak
    assert response.headers["X-Request-ID"] == "req-1234"
    logged = [r for r in caplog.records if "req-1234" in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/v1/jobs/not-a-uuid").headers["X-Request-ID"]
    assert first and second and first != second


def test_a_database_outage_answers_503_database_unavailable(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"database_url": UNREACHABLE_DB}))
    with _client(app) as http:
        listing = http.get("/v1/jobs")
        job = http.get(f"/v1/jobs/{uuid.uuid4()}")
    for response in (listing, job):
        assert response.status_code == 503
        assert response.json()["code"] == "database_unavailable"


def test_an_object_store_outage_answers_503_storage_unavailable(settings: Settings) -> None:
    dead = settings.model_copy(
        update={
            "s3_endpoint_url": "http://127.0.0.1:1",
            "s3_max_attempts": 1,
            "s3_connect_timeout_s": 1.0,
        }
    )
    with _client(create_app(dead)) as http:
        response = http.post("/v1/batches", json={"prefix": "outage/", "model": "mirnet-lol"})
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "storage_unavailable"
    assert settings.input_bucket in body["message"]


def test_every_invalid_request_answers_the_same_status(client: TestClient) -> None:
    """A schema's error, a check after the schema, the framework refusing a body: one code, so
    one status, whichever of them noticed."""
    batch = client.post("/v1/batches", json={"keys": [f"same-status-{uuid.uuid4()}.jpg"]})
    assert batch.status_code == 202, batch.text
    batch_id = batch.json()["id"]
    answers = {
        "a schema's field": client.post("/v1/jobs", json={"input_key": ""}),
        "a query parameter": client.get("/v1/jobs", params={"status": "exploded"}),
        "a body that is not JSON": client.post(
            "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
        ),
        "a multipart body the framework cannot parse": client.post(
            "/v1/jobs", content=b"x", headers={"content-type": "multipart/form-data"}
        ),
        "a multipart request without its file": client.post(
            "/v1/jobs", files={"other": ("x.jpg", b"x")}
        ),
        "a bad cursor": client.get("/v1/jobs", params={"cursor": "garbage!"}),
        "an unsafe object key": client.post("/v1/jobs", json={"input_key": "../../etc/passwd"}),
        "an unknown review rule": client.get(
            f"/v1/batches/{batch_id}/review", params={"rule": "nope"}
        ),
        "the report page's filter": client.get(
            f"/v1/batches/{batch_id}/report", params={"show": "odd"}
        ),
    }
    codes = {why: response.json()["code"] for why, response in answers.items()}
    assert codes == dict.fromkeys(answers, ErrorCode.invalid_request)
    statuses = {why: response.status_code for why, response in answers.items()}
    assert statuses == dict.fromkeys(answers, 422)
