"""Quality signals, flags, the review queue, decisions, previews and the report page, over the
real services: HTTP -> PostgreSQL -> Redis -> Celery worker -> S3."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from shared import jobs, tenants
from shared.config import Settings
from shared.db.engine import session_scope
from shared.review import Reason
from shared.tenants.links import sign_report_link
from tests.services import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]

ONLY_EXPOSURE_RULES = {
    "still_dark": False,
    "lights_blown": False,
    "noise_amplified": False,
    "colour_shifted": False,
    "input_blurred": False,
}
"""Batch options that leave only the rules reading the input's brightness, whose outcome on
these synthetic photos does not depend on what the model makes of them."""


def photo(brightness: float, seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    pattern = 0.6 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0)
    pixels = np.clip(
        pattern[..., None] * [1.0, 0.9, 0.8] + rng.normal(0, 0.02, (height, width, 3)), 0, 1
    )
    buffer = io.BytesIO()
    Image.fromarray((pixels * brightness * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.size


@pytest.fixture(scope="module")
def reviewed_batch(client: TestClient, s3, settings: Settings) -> dict:  # type: ignore[no-untyped-def]
    """A finished batch of a well-exposed photo (flagged), a dim one (not) and a corrupt one."""
    prefix = f"review-{uuid.uuid4().hex[:8]}/"
    objects = {"a-bright.png": photo(1.0), "b-dim.png": photo(0.12, 1), "c-corrupt.png": b"no"}
    for name, body in objects.items():
        s3.put_object(Bucket=settings.input_bucket, Key=prefix + name, Body=body)
    response = client.post(
        "/v1/batches",
        json={
            "prefix": prefix,
            "model": "darkroom-night",
            "options": {"review": ONLY_EXPOSURE_RULES},
        },
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    wait_until(
        lambda: client.get(f"/v1/batches/{batch['id']}").json(),
        180,
        message=lambda body: f"batch to finish ({body['counts']})",
        until=lambda body: body["done"] == body["total"],
    )
    listed = client.get("/v1/jobs", params={"batch_id": batch["id"]}).json()["items"]
    by_name = {job["input_key"].rsplit("/", 1)[1]: job for job in listed}
    return {"id": batch["id"], "jobs": by_name}


def test_each_finished_job_carries_its_quality_previews_and_flags(reviewed_batch: dict) -> None:
    bright, dim, corrupt = (
        reviewed_batch["jobs"][n] for n in ("a-bright.png", "b-dim.png", "c-corrupt.png")
    )
    assert bright["status"] == dim["status"] == "succeeded"
    for job in (bright, dim):
        assert set(job["quality"]) >= {"input", "result"}
        assert {"mean_luma", "clipped_share", "noise", "sharpness", "colour_cast"} <= set(
            job["quality"]["input"]
        )
        assert job["timings"]["measure"] is not None
        for side in ("before", "after"):
            preview = httpx.get(job["previews"][side])
            preview.raise_for_status()
            assert jpeg_size(preview.content) == (96, 64)
    assert bright["quality"]["input"]["mean_luma"] > 0.35 > dim["quality"]["input"]["mean_luma"]
    assert bright["review"]["flagged"] is True
    (reason,) = bright["review"]["reasons"]
    assert reason["rule"] == "input_well_exposed"
    assert reason["message"].startswith("input already well exposed: mean luma of the input is")
    assert dim["review"] == {
        "flagged": False,
        "reasons": [],
        "decision": None,
        "note": None,
        "reviewed_at": None,
        "redo_of": None,
    }
    assert corrupt["status"] == "failed" and corrupt["error"]["code"] == "invalid_image"
    assert corrupt["quality"] is None and corrupt["previews"] is None


def test_the_review_queue_lists_the_flagged_and_decisions_are_counted(
    client: TestClient, reviewed_batch: dict, wait_job: Callable[..., dict]
) -> None:
    batch_id = reviewed_batch["id"]
    bright = reviewed_batch["jobs"]["a-bright.png"]
    dim = reviewed_batch["jobs"]["b-dim.png"]
    counts = client.get(f"/v1/batches/{batch_id}").json()["review"]
    assert counts == {
        "flagged": 1,
        "pending": 1,
        "accepted": 0,
        "rejected": 0,
        "redo": 0,
        "rules": {"input_well_exposed": 1},
        "unflagged": {"accepted": 0, "rejected": 0, "redo": 0},
    }
    queue = client.get(f"/v1/batches/{batch_id}/review").json()
    assert [job["id"] for job in queue["items"]] == [bright["id"]]
    assert queue["items"][0]["review"]["reasons"] and queue["next_cursor"] is None
    assert (
        client.get(f"/v1/batches/{batch_id}/review", params={"rule": "still_dark"}).json()["items"]
        == []
    )
    unknown = client.get(f"/v1/batches/{batch_id}/review", params={"rule": "bogus"})
    assert unknown.status_code == 422 and unknown.json()["code"] == "invalid_request"

    accepted = client.post(f"/v1/jobs/{bright['id']}/review", json={"decision": "accepted"})
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["job"]["review"]["decision"] == "accepted" and body["redo"] is None
    assert body["batch"]["pending"] == 0 and body["batch"]["accepted"] == 1
    assert client.get(f"/v1/batches/{batch_id}/review").json()["items"] == []
    decided = client.get(f"/v1/batches/{batch_id}/review", params={"decision": "decided"})
    assert [job["id"] for job in decided.json()["items"]] == [bright["id"]]
    changed = client.post(
        f"/v1/jobs/{bright['id']}/review", json={"decision": "rejected", "note": "too soft"}
    ).json()
    assert changed["batch"]["accepted"] == 0 and changed["batch"]["rejected"] == 1
    assert changed["job"]["review"]["note"] == "too soft"

    redo = client.post(
        f"/v1/jobs/{dim['id']}/review", json={"decision": "redo", "model": "mirnet-lol"}
    )
    assert redo.status_code == 200, redo.text
    new = redo.json()["redo"]
    assert new["review"]["redo_of"] == dim["id"] and new["batch_id"] == batch_id
    assert new["model"] == "mirnet-lol" and new["input_key"] == dim["input_key"]
    finished = wait_job(new["id"])
    assert finished["status"] == "succeeded" and finished["result"]["key"] != dim["result"]["key"]
    old = client.get(f"/v1/jobs/{dim['id']}").json()
    assert old["result"]["url"] and old["review"]["decision"] == "redo"  # both results stay
    again = client.post(f"/v1/jobs/{dim['id']}/review", json={"decision": "redo"})
    assert again.status_code == 409 and new["id"] in again.json()["message"]
    # dim was not flagged: its redo is no part of the queue's counts, which still add up.
    review = client.get(f"/v1/batches/{batch_id}").json()["review"]
    assert review["flagged"] == 1 and review["pending"] == 0 and review["rejected"] == 1
    assert review["redo"] == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"decision": "accepted"}, 409),  # a failed job has no result to accept
        ({"decision": "maybe"}, 422),
        ({"decision": "accepted", "model": "mirnet-lol"}, 422),
        ({"decision": "redo", "model": "no-such-model"}, 422),
    ],
)
def test_decisions_that_make_no_sense_are_refused(
    client: TestClient, reviewed_batch: dict, body: dict, status: int
) -> None:
    corrupt = reviewed_batch["jobs"]["c-corrupt.png"]
    response = client.post(f"/v1/jobs/{corrupt['id']}/review", json=body)
    assert response.status_code == status, response.text
    assert response.json()["message"]


def test_the_report_page_shows_flagged_photos_first_with_their_reasons(
    client: TestClient, reviewed_batch: dict
) -> None:
    batch_id = reviewed_batch["id"]
    response = client.get(f"/v1/batches/{batch_id}/report")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html.replace('xmlns="http://', "") and "https://" not in html  # offline
    positions = [
        html.index(f'data-job="{reviewed_batch["jobs"][n]["id"]}"')
        for n in ("a-bright.png", "c-corrupt.png", "b-dim.png")
    ]
    assert positions == sorted(positions)  # flagged, then failed, then the rest
    assert "input already well exposed: mean luma of the input is" in html
    only_failed = client.get(f"/v1/batches/{batch_id}/report", params={"show": "failed"}).text
    assert reviewed_batch["jobs"]["c-corrupt.png"]["id"] in only_failed
    assert reviewed_batch["jobs"]["a-bright.png"]["id"] not in only_failed
    assert client.get(f"/v1/batches/{batch_id}/report", params={"show": "odd"}).status_code == 422
    bright = reviewed_batch["jobs"]["a-bright.png"]
    preview = client.get(f"/v1/jobs/{bright['id']}/previews/after")
    assert preview.status_code == 200 and jpeg_size(preview.content) == (96, 64)
    corrupt = reviewed_batch["jobs"]["c-corrupt.png"]
    assert client.get(f"/v1/jobs/{corrupt['id']}/previews/before").status_code == 404


def _made_batch(settings: Settings, outcomes: dict[str, list[str] | str]) -> dict[str, str]:
    """A finished batch of the default tenant, written straight to the database (no worker):
    per input key, the rules its job tripped (succeeded) or its error code (failed). Returns
    the job ids by key."""
    with session_scope(settings.database_url) as session:
        _, ids = jobs.create_batch(
            session,
            model="mirnet-lol",
            options={},
            inputs=[(settings.input_bucket, key) for key in outcomes],
            input_prefix=None,
        )
        for job_id, outcome in zip(ids, outcomes.values(), strict=True):
            assert jobs.claim(session, job_id, "test")
            if isinstance(outcome, str):
                jobs.fail(session, job_id, code=outcome, message="it failed")
                continue
            reasons = [
                Reason(rule=rule, message=f"{rule}: because", value=1.0, threshold=0.5)
                for rule in outcome
            ]
            jobs.succeed(
                session,
                job_id,
                output_bucket=settings.output_bucket,
                output_key=f"results/{job_id}/out.jpg",
                timings={},
                quality={"input": {"mean_luma": 0.1}, "result": {"mean_luma": 0.4}},
                reasons=reasons,
            )
    return {key: str(job_id) for key, job_id in zip(outcomes, ids, strict=True)}


def _batch_of(client: TestClient, job_id: str) -> str:
    return str(client.get(f"/v1/jobs/{job_id}").json()["batch_id"])


def _card(html: str, job_id: str) -> str:
    found = re.search(rf'<section [^>]*data-job="{job_id}".*?</section>', html, re.S)
    assert found, job_id
    return found.group(0)


def test_an_offset_past_any_batch_is_refused_not_an_internal_error(
    client: TestClient, settings: Settings
) -> None:
    batch_id = _batch_of(client, _made_batch(settings, {"o/a.jpg": []})["o/a.jpg"])
    report = f"/v1/batches/{batch_id}/report"
    huge = client.get(report, params={"offset": 2**63})
    assert huge.status_code == 422 and huge.json()["code"] == "invalid_request"
    assert client.get(report, params={"offset": 2**31 - 1}).status_code == 200
    assert client.get(report, params={"offset": -1}).status_code == 422


def test_a_redo_is_offered_and_taken_only_with_a_model_ready_here(
    client: TestClient, settings: Settings, model_dir
) -> None:  # type: ignore[no-untyped-def]
    made = _made_batch(settings, {"m/a.jpg": ["still_dark"]})
    job_id = made["m/a.jpg"]
    ready = {m["name"] for m in client.get("/v1/models").json() if m["ready"] and m["allowed"]}
    assert {"mirnet-lol", "darkroom-night"} <= ready and "mirnet-finetuned" not in ready
    html = client.get(f"/v1/batches/{_batch_of(client, job_id)}/report").text
    select = re.search(r'<select data-role="redo-model".*?</select>', _card(html, job_id), re.S)
    assert select
    offered = set(re.findall(r"<option[^>]*>([^<]+)</option>", select.group(0)))
    assert offered == ready

    refused = client.post(
        f"/v1/jobs/{job_id}/review", json={"decision": "redo", "model": "mirnet-finetuned"}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "conflict"
    assert "'mirnet-finetuned' is not installed" in refused.json()["message"]
    assert str(model_dir) not in refused.json()["message"]
    assert client.get(f"/v1/jobs/{job_id}").json()["review"]["decision"] is None


def test_each_card_offers_only_what_the_review_endpoint_would_take(
    client: TestClient, settings: Settings
) -> None:
    made = _made_batch(
        settings,
        {
            "b/accepted.jpg": ["still_dark"],
            "b/redone.jpg": ["still_dark"],
            "b/unreadable.jpg": "invalid_image",
            "b/missing.jpg": "input_not_found",
        },
    )
    for key, decision in (("b/accepted.jpg", "accepted"), ("b/redone.jpg", "redo")):
        answer = client.post(f"/v1/jobs/{made[key]}/review", json={"decision": decision})
        assert answer.status_code == 200, answer.text
    html = client.get(f"/v1/batches/{_batch_of(client, made['b/accepted.jpg'])}/report").text
    accepted = _card(html, made["b/accepted.jpg"])
    assert re.search(r'data-decision="accepted"\s+disabled', accepted)  # already so
    assert re.search(r'data-decision="rejected"\s*>', accepted)  # may still be changed
    assert 'data-decision="redo"' in accepted
    # A redo is final: every decision on that job would be refused (409).
    assert "data-decision" not in _card(html, made["b/redone.jpg"])
    # A file that is not a readable photo would fail a redo the same way.
    assert "data-decision" not in _card(html, made["b/unreadable.jpg"])
    assert 'data-decision="redo"' in _card(html, made["b/missing.jpg"])
    assert 'rel="icon"' in html  # no /favicon.ico request to answer 404


def test_a_decision_on_an_unflagged_job_is_counted_apart_from_the_queue(
    client: TestClient, settings: Settings
) -> None:
    made = _made_batch(settings, {"c/flagged.jpg": ["still_dark"], "c/plain.jpg": []})
    batch_id = _batch_of(client, made["c/plain.jpg"])
    answer = client.post(f"/v1/jobs/{made['c/plain.jpg']}/review", json={"decision": "accepted"})
    assert answer.status_code == 200, answer.text
    for review in (answer.json()["batch"], client.get(f"/v1/batches/{batch_id}").json()["review"]):
        assert review["flagged"] == 1 and review["pending"] == 1
        decided = review["accepted"] + review["rejected"] + review["redo"]
        assert review["flagged"] == review["pending"] + decided
        assert review["unflagged"]["accepted"] == 1  # counted, apart from the queue
    html = client.get(f"/v1/batches/{batch_id}/report").text
    assert re.search(r'id="count-unflagged">1<', html)


@pytest.fixture(scope="module")
def keyed(settings: Settings, s3: object):  # type: ignore[no-untyped-def]
    """A server that requires API keys, and two tenants with a batch each."""
    app = create_app(settings.model_copy(update={"auth": "api_key"}))
    made = {}
    for name in ("one", "two"):
        tenant_id = f"r-{name}-{uuid.uuid4().hex[:6]}"
        with session_scope(settings.database_url) as session:
            tenants.create_tenant(session, tenant_id)
            key = tenants.create_key(session, tenant_id, "tests").secret
        http = TestClient(app, headers={"Authorization": f"Bearer {key}"})
        batch = http.post("/v1/batches", json={"keys": [f"tenants/{tenant_id}/missing.png"]}).json()
        made[name] = {"tenant": tenant_id, "http": http, "batch": batch["id"]}
    made["anonymous"] = TestClient(app)
    return made


def test_a_report_link_opens_one_batch_without_a_key(keyed: dict, settings: Settings) -> None:
    one, two, anonymous = keyed["one"], keyed["two"], keyed["anonymous"]
    link = one["http"].post(f"/v1/batches/{one['batch']}/report-link")
    assert link.status_code == 201, link.text
    url = httpx.URL(link.json()["url"])
    token = url.params["token"]
    assert url.path == f"/v1/batches/{one['batch']}/report"
    page = anonymous.get(url.path, params={"token": token})
    assert page.status_code == 200 and one["batch"] in page.text
    # The same token opens nothing else: not another batch, not the rest of the API.
    assert (
        anonymous.get(f"/v1/batches/{two['batch']}/report", params={"token": token}).status_code
        == 404
    )
    assert anonymous.get(f"/v1/batches/{one['batch']}", params={"token": token}).status_code == 401
    assert anonymous.get(f"/v1/batches/{one['batch']}/report").status_code == 401
    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    assert anonymous.get(url.path, params={"token": forged}).status_code == 401
    with session_scope(settings.database_url) as session:
        (key,) = tenants.list_keys(session, one["tenant"])
        expired = sign_report_link(
            tenants.get_tenant(session, one["tenant"]), uuid.UUID(one["batch"]), key.id, -1
        )
    assert anonymous.get(url.path, params={"token": expired}).status_code == 401


def test_another_tenants_key_never_sees_the_report(keyed: dict) -> None:
    one, two = keyed["one"], keyed["two"]
    assert two["http"].get(f"/v1/batches/{one['batch']}/report").status_code == 404
    assert two["http"].post(f"/v1/batches/{one['batch']}/report-link").status_code == 404
    assert one["http"].get(f"/v1/batches/{one['batch']}/report").status_code == 200
