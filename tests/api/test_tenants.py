"""API keys and tenants on a server that requires keys: nobody sees anyone else's work."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from api.app import create_app
from shared import jobs, tenants
from shared.config import Settings
from shared.db.engine import session_factory, session_scope
from shared.db.tables import ApiKey, JobStatus
from tests.cli.test_photos import darkroom
from tests.conftest import jpeg_bytes
from tests.services import wait_until


@dataclass
class TenantClient:
    id: str
    key: str
    http: TestClient
    secret: str

    @property
    def prefix(self) -> str:
        return f"tenants/{self.id}/"


def _make_tenant(settings: Settings, http: TestClient, **limits: int) -> TenantClient:
    tenant_id = f"t-{uuid.uuid4().hex[:8]}"
    with session_scope(settings.database_url) as session:
        tenant = tenants.create_tenant(session, tenant_id, **limits)
        new = tenants.create_key(session, tenant_id, "tests")
        secret = tenant.webhook_secret
    http.headers["Authorization"] = f"Bearer {new.secret}"
    return TenantClient(tenant_id, new.secret, http, secret)


@pytest.fixture(scope="module")
def auth_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth": "api_key"})


@pytest.fixture(scope="module")
def auth_app(auth_settings: Settings, s3: object):  # type: ignore[no-untyped-def]
    return create_app(auth_settings)


@pytest.fixture
def tenant_factory(auth_app, auth_settings: Settings) -> Iterator[Callable[..., TenantClient]]:  # type: ignore[no-untyped-def]
    clients: list[TestClient] = []

    def make(**limits: int) -> TenantClient:
        http = TestClient(auth_app)
        clients.append(http)
        return _make_tenant(auth_settings, http, **limits)

    yield make
    for http in clients:
        http.close()


def _put(s3, settings: Settings, key: str, seed: int = 0) -> str:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=settings.input_bucket, Key=key, Body=jpeg_bytes(seed=seed))
    return key


def _wait(http: TestClient, job_id: str, timeout: float = 120) -> dict:
    return wait_until(
        lambda: http.get(f"/v1/jobs/{job_id}").json(),
        timeout,
        message=lambda body: f"job {job_id} to finish (still {body.get('status')}: {body})",
        until=lambda body: JobStatus(body["status"]).finished,
    )


def test_requests_without_a_valid_key_are_refused(auth_app, tenant_factory) -> None:  # type: ignore[no-untyped-def]
    with TestClient(auth_app) as anonymous:
        for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/models")]:
            response = anonymous.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.json()["code"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"] == "Bearer"
        bad = anonymous.get("/v1/jobs", headers={"Authorization": "Bearer drk_not-a-key"})
        assert bad.status_code == 401
        assert anonymous.get("/healthz").status_code == 200  # probes need no key

    acme = tenant_factory()
    assert acme.http.get("/v1/jobs").status_code == 200
    with session_scope(auth_app.state.settings.database_url) as session:
        assert tenants.revoke_key(session, acme.key[:12]) == 1
    assert acme.http.get("/v1/jobs").status_code == 401


def test_only_a_hash_of_each_key_is_stored(auth_settings: Settings, tenant_factory) -> None:  # type: ignore[no-untyped-def]
    acme = tenant_factory()
    with session_factory(auth_settings.database_url)() as session:
        stored = session.scalar(select(ApiKey).where(ApiKey.tenant_id == acme.id))
        assert stored is not None and stored.key_hash == tenants.hash_key(acme.key)
        dump = session.execute(text("SELECT * FROM api_keys")).all()
    assert acme.key not in repr(dump)


def test_a_tenant_sees_nothing_of_another_tenant(
    auth_settings: Settings, tenant_factory, s3, worker
) -> None:  # type: ignore[no-untyped-def]
    acme, globex = tenant_factory(), tenant_factory()
    key = _put(s3, auth_settings, f"{acme.prefix}photos/a.jpg")
    created = acme.http.post("/v1/jobs", json={"model": "mirnet-lol", "input_key": key})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    batch = acme.http.post(
        "/v1/batches", json={"model": "mirnet-lol", "prefix": f"{acme.prefix}photos/"}
    )
    assert batch.status_code == 202, batch.text
    batch_id = batch.json()["id"]

    done = _wait(acme.http, job_id)
    assert done["status"] == "succeeded", done
    assert done["result"]["key"].startswith(f"{acme.prefix}results/{job_id}/")
    assert f"X-Amz-Expires={auth_settings.presign_expiry_s}" in done["result"]["url"]

    # Everything of acme is "not found" for globex: job, result, cancel, batch, listings.
    assert globex.http.get(f"/v1/jobs/{job_id}").status_code == 404
    assert globex.http.delete(f"/v1/jobs/{job_id}").status_code == 404
    assert globex.http.get(f"/v1/batches/{batch_id}").status_code == 404
    assert globex.http.get("/v1/jobs").json()["items"] == []
    assert globex.http.get("/v1/jobs", params={"batch_id": batch_id}).status_code == 404
    listed = acme.http.get("/v1/jobs").json()["items"]
    assert {item["id"] for item in listed} >= {job_id}

    # globex cannot name acme's objects (or anything outside its own prefix) as input.
    for foreign in (key, "photos/a.jpg", f"{globex.prefix}../{acme.prefix}photos/a.jpg"):
        refused = globex.http.post("/v1/jobs", json={"model": "mirnet-lol", "input_key": foreign})
        assert refused.status_code in (403, 422), (foreign, refused.text)
    refused = globex.http.post("/v1/batches", json={"model": "mirnet-lol", "prefix": acme.prefix})
    assert refused.status_code == 403


def test_uploads_land_under_the_tenants_prefix(tenant_factory) -> None:  # type: ignore[no-untyped-def]
    acme = tenant_factory()
    upload = acme.http.post("/v1/uploads", json={"filename": "../../etc/passwd.jpg"})
    assert upload.status_code == 201
    assert upload.json()["key"].startswith(f"{acme.prefix}uploads/")
    assert ".." not in upload.json()["key"]
    multipart = acme.http.post(
        "/v1/jobs",
        data={"model": "mirnet-lol"},
        files={"file": ("night.jpg", jpeg_bytes(), "image/jpeg")},
    )
    assert multipart.status_code == 202, multipart.text
    assert multipart.json()["input_key"].startswith(f"{acme.prefix}uploads/")


def test_idempotency_keys_are_per_tenant(auth_settings: Settings, tenant_factory, s3) -> None:  # type: ignore[no-untyped-def]
    acme, globex = tenant_factory(), tenant_factory()
    ids = []
    for tenant in (acme, globex, acme):
        key = _put(s3, auth_settings, f"{tenant.prefix}idem.jpg")
        response = tenant.http.post(
            "/v1/jobs",
            json={"model": "mirnet-lol", "input_key": key},
            headers={"Idempotency-Key": "same-key"},
        )
        assert response.status_code in (200, 202)
        ids.append(response.json()["id"])
    assert ids[0] == ids[2] != ids[1]


def test_submissions_over_the_rate_get_429_with_retry_after(
    auth_settings: Settings, tenant_factory, s3
) -> None:  # type: ignore[no-untyped-def]
    acme = tenant_factory(rate_limit_per_minute=3)
    key = _put(s3, auth_settings, f"{acme.prefix}rate.jpg")
    codes = [
        acme.http.post("/v1/jobs", json={"model": "mirnet-lol", "input_key": key}).status_code
        for _ in range(4)
    ]
    assert codes == [202, 202, 202, 429]
    limited = acme.http.post("/v1/jobs", json={"model": "mirnet-lol", "input_key": key})
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Reading is not limited, and other tenants are unaffected.
    assert acme.http.get("/v1/jobs").status_code == 200
    other = tenant_factory(rate_limit_per_minute=3)
    key = _put(s3, auth_settings, f"{other.prefix}rate.jpg")
    assert other.http.post("/v1/jobs", json={"input_key": key}).status_code == 202


def test_a_batch_over_the_tenants_quota_is_refused_whole(
    auth_settings: Settings, tenant_factory, s3
) -> None:  # type: ignore[no-untyped-def]
    acme = tenant_factory(max_active_jobs=2)
    keys = [_put(s3, auth_settings, f"{acme.prefix}quota/{i}.jpg", seed=i) for i in range(3)]
    refused = acme.http.post("/v1/batches", json={"model": "mirnet-lol", "keys": keys})
    assert refused.status_code == 429
    assert refused.json()["code"] == "quota_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert acme.http.get("/v1/jobs").json()["items"] == []  # nothing half-created
    accepted = acme.http.post("/v1/batches", json={"model": "mirnet-lol", "keys": keys[:2]})
    assert accepted.status_code == 202


def test_a_report_link_ends_with_its_key_and_with_the_tenants_link_secret(
    auth_settings: Settings, tenant_factory, service_env: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    acme = tenant_factory()
    with session_scope(auth_settings.database_url) as session:
        other_key = tenants.create_key(session, acme.id, "second").secret
        batch, (job_id,) = jobs.create_batch(
            session,
            model="mirnet-lol",
            options={},
            inputs=[(auth_settings.input_bucket, f"{acme.prefix}link/a.jpg")],
            input_prefix=None,
            tenant_id=acme.id,
        )
        assert jobs.claim(session, job_id, "test")
        assert jobs.succeed(
            session, job_id, output_bucket=auth_settings.output_bucket, output_key="r", timings={}
        )
    report = f"/v1/batches/{batch.id}/report"
    decide = f"/v1/jobs/{job_id}/review"

    def link(key: str) -> str:
        made = acme.http.post(
            f"/v1/batches/{batch.id}/report-link", headers={"Authorization": f"Bearer {key}"}
        )
        assert made.status_code == 201, made.text
        return made.json()["url"].split("token=", 1)[1]

    first, second = link(acme.key), link(other_key)
    with TestClient(acme.http.app) as anonymous:

        def opens(token: str) -> bool:
            return anonymous.get(report, params={"token": token}).status_code == 200

        assert opens(first) and opens(second)
        accepted = anonymous.post(decide, params={"token": first}, json={"decision": "accepted"})
        assert accepted.status_code == 200, accepted.text

        # Revoking the key that made a link ends the link: page, previews, decisions.
        with session_scope(auth_settings.database_url) as session:
            assert tenants.revoke_key(session, acme.key[:12]) == 1
        assert anonymous.get(report, params={"token": first}).status_code == 401
        preview = anonymous.get(f"/v1/jobs/{job_id}/previews/after", params={"token": first})
        assert preview.status_code == 401
        refused = anonymous.post(decide, params={"token": first}, json={"decision": "rejected"})
        assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"
        assert opens(second)  # the other key's link lives on

        # Rotating the tenant's link secret ends every link it handed out; new ones work.
        rotated = darkroom(
            "tenants", "rotate-link-secret", acme.id, env=dict(service_env), cwd=tmp_path
        )
        assert rotated.returncode == 0, rotated.stderr
        assert not opens(second)
        assert opens(link(other_key))
        unknown = darkroom(
            "tenants", "rotate-link-secret", "no-such-tenant", env=dict(service_env), cwd=tmp_path
        )
        assert unknown.returncode == 1 and unknown.stderr

        # Whatever a caller puts in a token is a 401, never a fault of the server's.
        for bad in (second.split(".")[0] + ".\u00e9", "\u00e9.\u00e9", "a.b.c"):
            assert anonymous.get(report, params={"token": bad}).status_code == 401, bad
