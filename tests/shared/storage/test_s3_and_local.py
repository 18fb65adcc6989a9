"""Both storage backends, against a real S3 endpoint (moto_server) and a real folder."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from shared.errors import InputNotFound, InvalidRequest, StorageError
from shared.storage import LocalStorage, S3Storage, Storage, make_storage


@pytest.fixture(params=["s3", "local"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "s3":
        settings: Settings = request.getfixturevalue("settings")
        request.getfixturevalue("s3")  # buckets exist
        return S3Storage(settings)
    return LocalStorage(tmp_path)


def test_put_get_head_list(storage: Storage, settings: Settings) -> None:
    bucket = settings.input_bucket
    storage.ensure_bucket(bucket)
    storage.put(bucket, "storage-test/a/1.jpg", b"one", "image/jpeg")
    storage.put(bucket, "storage-test/a/2.jpg", b"two!")
    assert storage.get(bucket, "storage-test/a/1.jpg") == b"one"
    assert storage.head(bucket, "storage-test/a/2.jpg").size == 4
    keys = [o.key for o in storage.list(bucket, "storage-test/a/")]
    assert keys == ["storage-test/a/1.jpg", "storage-test/a/2.jpg"]
    assert storage.exists(bucket, "storage-test/a/1.jpg")
    assert not storage.exists(bucket, "storage-test/a/3.jpg")


def test_missing_object_is_input_not_found(storage: Storage, settings: Settings) -> None:
    storage.ensure_bucket(settings.input_bucket)
    with pytest.raises(InputNotFound):
        storage.get(settings.input_bucket, "storage-test/none.jpg")


def test_presigned_urls_round_trip_over_http(settings: Settings, s3: object) -> None:
    storage = S3Storage(settings)
    put_url = storage.presign_put(settings.input_bucket, "storage-test/up.bin", 60)
    assert httpx.put(put_url, content=b"payload").status_code == 200
    get_url = storage.presign_get(settings.input_bucket, "storage-test/up.bin", 60)
    # Path-style addressing, so MinIO behind one host name works; made for the public endpoint.
    assert get_url.startswith(f"{settings.s3_public_endpoint_url}/{settings.input_bucket}/")
    assert httpx.get(get_url).content == b"payload"


def test_public_endpoint_is_used_for_presigning(settings: Settings) -> None:
    public = settings.model_copy(update={"s3_public_endpoint_url": "https://photos.example.com"})
    url = S3Storage(public).presign_get(settings.output_bucket, "k.jpg", 60)
    assert url.startswith(f"https://photos.example.com/{settings.output_bucket}/k.jpg?")


def test_unreachable_endpoint_is_a_retryable_storage_error(settings: Settings) -> None:
    dead = settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(StorageError) as info:
        S3Storage(dead).get("bucket", "key.jpg")
    assert info.value.retryable


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get("bucket", "k.jpg"),
        lambda s: s.put("bucket", "k.jpg", b"x"),
        lambda s: s.head("bucket", "k.jpg"),
        lambda s: s.exists("bucket", "k.jpg"),
        lambda s: s.delete("bucket", "k.jpg"),
        lambda s: list(s.list("bucket", "prefix/")),
        lambda s: s.ensure_bucket("bucket"),
        lambda s: s.check(),
    ],
    ids=["get", "put", "head", "exists", "delete", "list", "ensure_bucket", "check"],
)
def test_every_call_translates_an_outage_into_storage_error(settings: Settings, call) -> None:  # type: ignore[no-untyped-def]
    """boto3's errors never leave the storage module, whichever call met them."""
    dead = settings.model_copy(
        update={"s3_endpoint_url": "http://127.0.0.1:9", "s3_max_attempts": 1}
    )
    with pytest.raises(StorageError):
        call(S3Storage(dead))


def test_a_missing_bucket_is_input_not_found_for_reads_and_listing(
    settings: Settings, s3: object
) -> None:
    storage = S3Storage(settings)
    with pytest.raises(InputNotFound):
        storage.head("darkroom-no-such-bucket", "k.jpg")
    with pytest.raises(InputNotFound):
        list(storage.list("darkroom-no-such-bucket", "p/"))
    storage.delete(settings.input_bucket, "storage-test/never-there.jpg")  # idempotent


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "/abs", "a\\b", ""])
def test_local_backend_refuses_traversal(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidRequest):
        LocalStorage(tmp_path).get("bucket", key)


def test_local_backend_is_the_embedded_default(tmp_path: Path) -> None:
    storage = make_storage(Settings(home=tmp_path))
    assert isinstance(storage, LocalStorage)
    storage.ensure_bucket("b")
    storage.put("b", "x/y.png", b"data")
    assert (tmp_path / "objects" / "b" / "x" / "y.png").read_bytes() == b"data"
