"""Webhooks: targets checked, POSTs signed, failures retried, never sent twice per event."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from shared import jobs, webhooks
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import WebhookDelivery
from shared.errors import InvalidWebhook
from tests.conftest import jpeg_bytes
from tests.services import wait_until
from tests.webhook_receiver import Receiver, webhook_receiver


def _strict(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_allow_private": False})


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/hook",  # plain http
        "https://127.0.0.1/hook",  # loopback
        "https://localhost/hook",
        "https://10.0.0.7/hook",  # private
        "https://169.254.169.254/latest/meta-data",  # cloud metadata, link-local
        "https://[::1]/hook",
        "https://user:pw@93.184.216.34/hook",  # credentials in the URL
        "ftp://93.184.216.34/hook",
        "not a url",
    ],
)
def test_targets_that_reach_inside_are_refused(settings: Settings, url: str) -> None:
    with pytest.raises(InvalidWebhook):
        webhooks.validate_target(url, _strict(settings))


def test_a_public_https_target_is_accepted(settings: Settings) -> None:
    url = "https://93.184.216.34/hook"
    assert webhooks.validate_target(url, _strict(settings)) == url


def test_signatures_verify_and_catch_tampering_and_replays() -> None:
    body = b'{"event":"job.succeeded"}'
    now = int(time.time())
    header = webhooks.sign("s3cret", now, body)
    assert webhooks.verify("s3cret", header, body)
    assert not webhooks.verify("other", header, body)
    assert not webhooks.verify("s3cret", header, body + b" ")
    stale = webhooks.sign("s3cret", now - 3600, body)
    assert not webhooks.verify("s3cret", stale, body)
    assert not webhooks.verify("s3cret", "garbage", body)


def test_the_api_refuses_a_private_webhook_target(settings: Settings, s3) -> None:  # type: ignore[no-untyped-def]
    from api.app import create_app

    with TestClient(create_app(_strict(settings))) as http:
        response = http.post(
            "/v1/jobs",
            json={"input_key": "x.jpg", "webhook_url": "https://169.254.169.254/"},
        )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_webhook"


def _deliveries(settings: Settings, url_prefix: str) -> list[WebhookDelivery]:
    with session_factory(settings.database_url)() as session:
        return list(
            session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.url.startswith(url_prefix))
                .order_by(WebhookDelivery.created_at)
            )
        )


def _wait_for(receiver: Receiver, count: int, timeout: float = 60) -> None:
    wait_until(
        lambda: list(receiver.received),
        timeout,
        message=f"{count} webhook POSTs",
        until=lambda received: len(received) >= count,
    )


def test_a_finished_job_posts_one_signed_webhook_even_after_failures(
    settings: Settings, client: TestClient, s3, worker, wait_job
) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=settings.input_bucket, Key="hooks/a.jpg", Body=jpeg_bytes())
    with webhook_receiver() as receiver:
        receiver.statuses = [500, 503]  # the web app is down twice, then recovers
        created = client.post(
            "/v1/jobs",
            json={
                "model": "mirnet-lol",
                "input_key": "hooks/a.jpg",
                "webhook_url": f"{receiver.url}/done",
            },
        )
        assert created.status_code == 202, created.text
        job = wait_job(created.json()["id"])
        assert job["status"] == "succeeded"
        _wait_for(receiver, 3)
        time.sleep(1.0)  # nothing more may arrive once it was accepted
        assert len(receiver.received) == 3

    last = receiver.received[-1]
    assert last.path == "/done"
    assert last.headers["Darkroom-Event"] == "job.succeeded"
    secret = settings.webhook_secret.get_secret_value()  # type: ignore[union-attr]
    assert webhooks.verify(secret, last.headers[webhooks.SIGNATURE_HEADER], last.body)
    payload = json.loads(last.body)
    assert payload["event"] == "job.succeeded"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["output_key"] == job["result"]["key"]
    review = job["review"]  # whether a person should look, as GET /v1/jobs/{id} says
    assert payload["data"]["review"] == {"flagged": review["flagged"], "reasons": review["reasons"]}
    # The same delivery, retried: one id across the three POSTs.
    assert len({r.headers["Darkroom-Delivery"] for r in receiver.received}) == 1
    [delivery] = _deliveries(settings, receiver.url)
    assert delivery.status == "delivered" and delivery.attempts == 3


def test_a_batch_posts_once_when_its_last_job_finishes(
    settings: Settings, client: TestClient, s3, worker
) -> None:  # type: ignore[no-untyped-def]
    keys = []
    for index in range(3):
        key = f"hooks/batch/{index}.jpg"
        s3.put_object(Bucket=settings.input_bucket, Key=key, Body=jpeg_bytes(seed=index))
        keys.append(key)
    s3.put_object(Bucket=settings.input_bucket, Key="hooks/batch/bad.jpg", Body=b"not a jpeg")
    keys.append("hooks/batch/bad.jpg")
    with webhook_receiver() as receiver:
        created = client.post(
            "/v1/batches",
            json={"model": "mirnet-lol", "keys": keys, "webhook_url": f"{receiver.url}/batch"},
        )
        assert created.status_code == 202, created.text
        _wait_for(receiver, 1, timeout=120)
        time.sleep(1.0)
        assert len(receiver.received) == 1
    payload = json.loads(receiver.received[0].body)
    assert payload["event"] == "batch.finished"
    assert payload["data"]["id"] == created.json()["id"]
    assert payload["data"]["counts"]["succeeded"] == 3
    assert payload["data"]["counts"]["failed"] == 1


def test_a_batch_is_finished_once_however_often_it_is_checked(
    settings: Settings, client: TestClient, s3, worker
) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=settings.input_bucket, Key="hooks/once.jpg", Body=jpeg_bytes())
    created = client.post("/v1/batches", json={"model": "mirnet-lol", "keys": ["hooks/once.jpg"]})
    batch_id = uuid.UUID(created.json()["id"])
    wait_until(
        lambda: client.get(f"/v1/batches/{batch_id}").json(),
        120,
        message="the batch's job to finish",
        until=lambda batch: batch["done"] >= 1,
    )
    sessions = session_factory(settings.database_url)
    with sessions.begin() as session:
        assert jobs.get_batch(session, batch_id).finished_at is not None
        finished_at = jobs.get_batch(session, batch_id).finished_at
        assert not jobs.finish_batch_if_done(session, batch_id)
        jobs.sweep_batches(session)
        assert jobs.get_batch(session, batch_id).finished_at == finished_at


def test_a_delivery_that_keeps_failing_is_given_up(settings: Settings) -> None:
    sessions = session_factory(settings.database_url)
    quick = settings.model_copy(update={"webhook_max_attempts": 2, "retry_backoff_s": 0.01})
    with webhook_receiver() as receiver:
        receiver.statuses = [500] * 10
        with sessions.begin() as session:
            webhooks.queue_event(
                session, "default", f"{receiver.url}/gone", "job.failed", {"id": "x"}
            )

        def delivered() -> WebhookDelivery | None:
            [delivery] = _deliveries(settings, receiver.url)
            if delivery.status != "pending":
                return delivery
            # The session worker delivers too; this call makes the test independent of it.
            webhooks.deliver_due(sessions, quick)
            return None

        wait_until(delivered, 30, interval=0.05, message="the delivery to be given up")
    [delivery] = _deliveries(settings, receiver.url)
    assert delivery.status == "failed"
    assert "500" in (delivery.last_error or "")
