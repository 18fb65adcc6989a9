"""Object storage: S3-compatible (AWS, MinIO, moto) or a local folder for the embedded mode.

Both backends speak in (bucket, key) pairs so jobs record the same thing whichever runs. Errors
come out typed: a missing object is ``InputNotFound`` (the job's fault, not retried), everything
else is ``StorageError`` (retryable).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as _Urllib3Error

from shared.errors import InputNotFound, InvalidRequest, StorageError
from shared.settings import Settings

_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
# A connection that breaks while a body streams can surface as botocore's wrapper or, in some
# botocore/urllib3 versions, as the raw urllib3 or socket error: all are transient for us.
_TRANSPORT_ERRORS = (BotoCoreError, _Urllib3Error, OSError)


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    content_type: str | None = None


class Storage(Protocol):
    def get(self, bucket: str, key: str) -> bytes: ...
    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def head(self, bucket: str, key: str) -> ObjectInfo: ...
    def exists(self, bucket: str, key: str) -> bool: ...
    def delete(self, bucket: str, key: str) -> None: ...
    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]: ...
    def presign_get(self, bucket: str, key: str, expires_s: int) -> str: ...
    def presign_put(
        self, bucket: str, key: str, expires_s: int, content_type: str | None = None
    ) -> str: ...
    def ensure_bucket(self, bucket: str) -> None: ...
    def check(self) -> None: ...


def validate_key(key: str) -> str:
    """Refuse keys that could climb out of a prefix or a local folder."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidRequest(f"invalid object key {key!r}")
    if any(part in ("..", ".") for part in PurePosixPath(key).parts):
        raise InvalidRequest(f"invalid object key {key!r}: '.' and '..' segments are not allowed")
    return key


class S3Storage:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = self._make_client(settings.s3_endpoint_url)
        # SigV4 signs the Host header: URLs for clients must be signed for the public name.
        public = settings.s3_public_endpoint_url
        self._presign_client = self._make_client(public) if public else self._client

    def _make_client(self, endpoint_url: str | None) -> BaseClient:
        s = self._settings
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=s.s3_region,
            aws_access_key_id=s.s3_access_key_id.get_secret_value() if s.s3_access_key_id else None,
            aws_secret_access_key=(
                s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
            ),
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                # botocore retries 5xx, throttling and resets itself first (standard mode has
                # its own jittered backoff); the job's retries come on top, with longer waits.
                retries={"max_attempts": max(1, s.s3_max_attempts), "mode": "standard"},
                connect_timeout=s.s3_connect_timeout_s,
                read_timeout=s.s3_read_timeout_s,
            ),
        )

    def get(self, bucket: str, key: str) -> bytes:
        try:
            body = self._client.get_object(Bucket=bucket, Key=key)["Body"]
            return body.read()
        except ClientError as exc:
            raise self._translate(exc, bucket, key) from exc
        except _TRANSPORT_ERRORS as exc:
            raise StorageError(f"reading s3://{bucket}/{key} failed: {exc}") from exc

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        """Returns only once the store has answered 200 for the whole body: callers record a
        result as done after this, never before (a cut upload raises ``StorageError``)."""
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self._client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        except (ClientError, *_TRANSPORT_ERRORS) as exc:
            raise StorageError(f"writing s3://{bucket}/{key} failed: {exc}") from exc

    def head(self, bucket: str, key: str) -> ObjectInfo:
        try:
            meta = self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            raise self._translate(exc, bucket, key) from exc
        except BotoCoreError as exc:
            raise StorageError(f"reading s3://{bucket}/{key} failed: {exc}") from exc
        return ObjectInfo(bucket, key, meta["ContentLength"], meta.get("ContentType"))

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
        except InputNotFound:
            return False
        return True

    def delete(self, bucket: str, key: str) -> None:
        """Idempotent, like S3 itself: deleting a missing object succeeds."""
        try:
            self._client.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"deleting s3://{bucket}/{key} failed: {exc}") from exc

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(bucket, obj["Key"], obj["Size"])
        except ClientError as exc:
            raise self._translate(exc, bucket, prefix) from exc
        except BotoCoreError as exc:
            raise StorageError(f"listing s3://{bucket}/{prefix} failed: {exc}") from exc

    def presign_get(self, bucket: str, key: str, expires_s: int) -> str:
        return self._presign_client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )

    def presign_put(
        self, bucket: str, key: str, expires_s: int, content_type: str | None = None
    ) -> str:
        params = {"Bucket": bucket, "Key": key}
        if content_type:
            params["ContentType"] = content_type
        return self._presign_client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_s
        )

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self._client.head_bucket(Bucket=bucket)
        except ClientError:
            try:
                self._client.create_bucket(Bucket=bucket)
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"creating bucket {bucket!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"object store unreachable: {exc}") from exc

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._settings.output_bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"object store not ready: {exc}") from exc

    @staticmethod
    def _translate(exc: ClientError, bucket: str, key: str) -> Exception:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            return InputNotFound(f"object s3://{bucket}/{key} does not exist")
        return StorageError(f"object store error on s3://{bucket}/{key}: {exc}")


class LocalStorage:
    """Buckets are sub-folders of one root: the embedded mode needs no object server."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, bucket: str, key: str) -> Path:
        validate_key(bucket)
        validate_key(key)
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to(self.root / bucket):
            raise InvalidRequest(f"invalid object key {key!r}")
        return path

    def get(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise InputNotFound(f"object {bucket}/{key} does not exist") from None
        except OSError as exc:
            raise StorageError(f"reading {path} failed: {exc}") from exc

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(bucket, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)  # readers never see half a file
        except OSError as exc:
            raise StorageError(f"writing {path} failed: {exc}") from exc

    def head(self, bucket: str, key: str) -> ObjectInfo:
        path = self._path(bucket, key)
        if not path.is_file():
            raise InputNotFound(f"object {bucket}/{key} does not exist")
        return ObjectInfo(bucket, key, path.stat().st_size)

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def delete(self, bucket: str, key: str) -> None:
        try:
            self._path(bucket, key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"deleting {bucket}/{key} failed: {exc}") from exc

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / bucket
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            key = path.relative_to(base).as_posix()
            if path.is_file() and key.startswith(prefix) and not key.endswith(".part"):
                yield ObjectInfo(bucket, key, path.stat().st_size)

    def presign_get(self, bucket: str, key: str, expires_s: int) -> str:
        return self._path(bucket, key).as_uri()

    def presign_put(
        self, bucket: str, key: str, expires_s: int, content_type: str | None = None
    ) -> str:
        return self._path(bucket, key).as_uri()

    def ensure_bucket(self, bucket: str) -> None:
        (self.root / validate_key(bucket)).mkdir(parents=True, exist_ok=True)

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"local object folder {self.root} does not exist")

    def remove_bucket(self, bucket: str) -> None:
        shutil.rmtree(self.root / validate_key(bucket), ignore_errors=True)


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(settings)
    assert settings.storage_dir is not None
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    return LocalStorage(settings.storage_dir)
