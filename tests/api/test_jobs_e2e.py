"""The whole job path over real services: HTTP -> PostgreSQL -> Redis -> Celery worker -> S3."""

from __future__ import annotations

import io
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from shared import jobs
from shared.config import Settings
from shared.db.tables import JobStatus
from shared.queue import make_dispatcher
from tests.conftest import jpeg_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("worker")]


def fetch_result(body: dict) -> Image.Image:
    url = body["result"]["url"]
    response = httpx.get(url)
    response.raise_for_status()
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def test_job_restores_an_s3_object_and_applies_exif_orientation(
    client: TestClient, s3, settings: Settings, wait_job
) -> None:
    # 64x48 stored with orientation 6 (rotate 90 CW to view): the upright photo is 48x64.
    s3.put_object(
        Bucket=settings.input_bucket, Key="phone/IMG_0001.jpg", Body=jpeg_bytes((64, 48), 6)
    )
    response = client.post(
        "/v1/jobs", json={"input_key": "phone/IMG_0001.jpg", "model": "mirnet-lol"}
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"

    done = wait_job(job["id"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1
    assert done["progress"] == 1.0
    assert all(done["timings"][stage] is not None for stage in done["timings"])
    assert done["result"]["key"] == f"results/{job['id']}/IMG_0001.jpg"

    result = fetch_result(done)
    assert result.format == "JPEG"
    assert result.size == (48, 64)
    assert result.getexif().get(0x0112, 1) == 1
    # The marker that was top-left in the stored pixels is top-right once upright.
    assert result.getpixel((40, 4))[0] > 150 and result.getpixel((4, 40))[0] < 150


def test_batch_of_20_with_one_corrupt_file(
    client: TestClient, s3, settings: Settings, wait_job
) -> None:
    prefix = f"batch-{uuid.uuid4().hex[:6]}/"
    for index in range(19):
        s3.put_object(
            Bucket=settings.input_bucket,
            Key=f"{prefix}{index:02d}.jpg",
            Body=jpeg_bytes((40, 32), seed=index),
        )
    s3.put_object(Bucket=settings.input_bucket, Key=f"{prefix}19.jpg", Body=b"not a jpeg at all")

    response = client.post("/v1/batches", json={"prefix": prefix, "model": "mirnet-lol"})
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["total"] == 20

    listing = client.get("/v1/jobs", params={"batch_id": batch["id"], "limit": 100}).json()
    finals = {j["input_key"]: wait_job(j["id"]) for j in listing["items"]}
    assert len(finals) == 20

    summary = client.get(f"/v1/batches/{batch['id']}").json()
    assert summary["counts"]["succeeded"] == 19
    assert summary["counts"]["failed"] == 1
    assert summary["done"] == 20 and summary["eta_s"] == 0
    assert summary["throughput_per_s"] > 0

    bad = finals[f"{prefix}19.jpg"]
    assert bad["status"] == "failed"
    assert bad["error"]["code"] == "invalid_image"
    assert bad["error"]["message"]
    for key, job in finals.items():
        if key != f"{prefix}19.jpg":
            assert job["status"] == "succeeded", job
            assert fetch_result(job).size == (40, 32)


def test_idempotency_key_returns_the_same_job_and_runs_it_once(
    client: TestClient, s3, settings: Settings, wait_job
) -> None:
    s3.put_object(Bucket=settings.input_bucket, Key="idem.png", Body=_png())
    key = f"order-{uuid.uuid4()}"
    first = client.post(
        "/v1/jobs",
        json={"input_key": "idem.png", "model": "mirnet-lol"},
        headers={"Idempotency-Key": key},
    )
    second = client.post(
        "/v1/jobs",
        json={"input_key": "idem.png", "model": "mirnet-lol"},
        headers={"Idempotency-Key": key},
    )
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    done = wait_job(first.json()["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1
    listed = s3.list_objects_v2(Bucket=settings.output_bucket, Prefix=f"results/{done['id']}/")
    assert [obj["Key"] for obj in listed["Contents"]] == [f"results/{done['id']}/idem.png"]
    assert fetch_result(done).format == "PNG"


def test_cancelling_a_queued_job_stops_it_before_it_runs(
    client: TestClient, s3, settings: Settings, wait_job
) -> None:
    s3.put_object(Bucket=settings.input_bucket, Key="cancel-me.jpg", Body=jpeg_bytes())
    held: list = []

    class Hold:  # keeps the message back so the job is still queued when cancelled
        def dispatch(self, items):  # type: ignore[no-untyped-def]
            held.extend(items)

        def check(self) -> None:
            return None

    from shared.db.engine import session_factory

    with session_factory(settings.database_url)() as session:
        job, _ = jobs.submit_job(
            session,
            settings,
            Hold(),
            client.app.state.models,
            model="mirnet-lol",
            input_key="cancel-me.jpg",
        )
    response = client.delete(f"/v1/jobs/{job.id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    # The message arrives late: the worker must leave the cancelled job alone.
    make_dispatcher(settings).dispatch(held)
    s3.put_object(Bucket=settings.input_bucket, Key="after.jpg", Body=jpeg_bytes())
    after = client.post("/v1/jobs", json={"input_key": "after.jpg", "model": "mirnet-lol"}).json()
    assert wait_job(after["id"])["status"] == "succeeded"  # the worker went past the message
    final = client.get(f"/v1/jobs/{job.id}").json()
    assert final["status"] == "cancelled" and final["attempts"] == 0
    assert client.delete(f"/v1/jobs/{after['id']}").status_code == 409


def test_cancelling_a_running_job_stops_the_worker(
    client: TestClient, s3, settings: Settings, wait_job
) -> None:
    s3.put_object(Bucket=settings.input_bucket, Key="big.jpg", Body=jpeg_bytes((1600, 1200)))
    job = client.post("/v1/jobs", json={"input_key": "big.jpg", "model": "mirnet-lol"}).json()
    running = wait_job(job["id"], until=frozenset(JobStatus) - {JobStatus.queued})
    assert running["status"] == "running", running
    response = client.delete(f"/v1/jobs/{job['id']}")
    assert response.status_code == 200
    final = wait_job(job["id"])
    assert final["status"] == "cancelled", final
    listed = s3.list_objects_v2(Bucket=settings.output_bucket, Prefix=f"results/{job['id']}/")
    assert listed.get("KeyCount", 0) == 0


def test_missing_object_and_unknown_model(client: TestClient, settings: Settings, wait_job) -> None:
    job = client.post(
        "/v1/jobs", json={"input_key": "nowhere/missing.jpg", "model": "mirnet-lol"}
    ).json()
    done = wait_job(job["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "input_not_found"
    assert "missing.jpg" in done["error"]["message"]

    response = client.post("/v1/jobs", json={"input_key": "a.jpg", "model": "no-such-model"})
    assert response.status_code == 422
    assert response.json()["code"] == "model_not_found"


def test_multipart_upload_and_presigned_upload(
    client: TestClient, settings: Settings, wait_job
) -> None:
    response = client.post(
        "/v1/jobs",
        files={"file": ("holiday photo.jpg", jpeg_bytes((48, 48)), "image/jpeg")},
        data={"options": '{"output_format": "png"}', "model": "mirnet-lol"},
    )
    assert response.status_code == 202, response.text
    done = wait_job(response.json()["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["key"].endswith("holiday_photo.png")
    assert fetch_result(done).format == "PNG"

    upload = client.post("/v1/uploads", json={"filename": "big.jpg", "content_type": "image/jpeg"})
    assert upload.status_code == 201
    spec = upload.json()
    put = httpx.put(spec["url"], content=jpeg_bytes((32, 32)), headers=spec["headers"])
    assert put.status_code == 200
    job = client.post("/v1/jobs", json={"input_key": spec["key"], "model": "mirnet-lol"}).json()
    assert wait_job(job["id"])["status"] == "succeeded"


def test_an_upload_keeps_its_folders_in_its_key_and_its_result(
    client: TestClient, settings: Settings, wait_job
) -> None:
    upload = client.post("/v1/uploads", json={"filename": "dim/a/2.png"}).json()
    assert upload["key"].startswith("uploads/") and upload["key"].endswith("/dim/a/2.png")
    assert upload["headers"] == {}
    png = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes((32, 24)))).save(png, "PNG")
    assert httpx.put(upload["url"], content=png.getvalue()).status_code == 200
    job = client.post("/v1/jobs", json={"input_key": upload["key"], "model": "mirnet-lol"}).json()
    done = wait_job(job["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["key"] == f"results/{job['id']}/dim/a/2.png"
    unsafe = client.post("/v1/uploads", json={"filename": "../x/./ночь/3.jpg"}).json()
    assert unsafe["key"].endswith("/x/upload/3.jpg") and ".." not in unsafe["key"]


def test_default_model_is_darkroom_night_and_brightens(
    client: TestClient, s3, settings: Settings, wait_job
) -> None:
    dark = Image.open(io.BytesIO(jpeg_bytes((96, 64)))).convert("RGB").point(lambda v: v // 6)
    out = io.BytesIO()
    dark.save(out, "JPEG", quality=95)
    s3.put_object(Bucket=settings.input_bucket, Key="night/dim.jpg", Body=out.getvalue())
    job = client.post("/v1/jobs", json={"input_key": "night/dim.jpg"}).json()
    assert job["model"] == "darkroom-night"
    done = wait_job(job["id"])
    assert done["status"] == "succeeded", done
    result = fetch_result(done).convert("L")
    assert result.size == (96, 64)
    import numpy as np

    assert np.asarray(result).mean() > 2 * np.asarray(dark.convert("L")).mean()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (36, 28), (20, 30, 40)).save(out, "PNG")
    return out.getvalue()
