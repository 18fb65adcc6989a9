"""S3-compatible object storage (AWS, MinIO, moto) through boto3.

This is the one place boto3's errors become Darkroom's: every call goes through
:meth:`S3Storage._call`, which turns a missing object or bucket into ``InputNotFound`` and
anything else (error answers, timeouts, resets, a stream cut mid-body) into ``StorageError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as _Urllib3Error

from shared.config import Settings
from shared.errors import InputNotFound, StorageError
from shared.storage.base import ObjectInfo

_T = TypeVar("_T")
_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
# A connection that breaks while a body streams can surface as botocore's wrapper or, in some
# botocore/urllib3 versions, as the raw urllib3 or socket error: all are transient for us.
_TRANSPORT_ERRORS = (BotoCoreError, _Urllib3Error, OSError)


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

    @staticmethod
    def _call(doing: str, where: str, call: Callable[[], _T], *, missing_ok: bool = False) -> _T:
        """Run one boto3 call (with whatever it reads), translating every error it raises.
        ``missing_ok=False``: a missing object is the caller's ``InputNotFound``."""
        try:
            return call()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES and not missing_ok:
                raise InputNotFound(f"object {where} does not exist") from exc
            raise StorageError(f"{doing} {where} failed: {exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            raise StorageError(f"{doing} {where} failed: {exc}") from exc

    def get(self, bucket: str, key: str) -> bytes:
        def read() -> bytes:
            body: bytes = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body

        return self._call("reading", f"s3://{bucket}/{key}", read)

    def put(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        """Returns only once the store has answered 200 for the whole body: callers record a
        result as done after this, never before (a cut upload raises ``StorageError``)."""
        extra = {"ContentType": content_type} if content_type else {}
        self._call(
            "writing",
            f"s3://{bucket}/{key}",
            lambda: self._client.put_object(Bucket=bucket, Key=key, Body=data, **extra),
            missing_ok=True,
        )

    def head(self, bucket: str, key: str) -> ObjectInfo:
        meta = self._call(
            "reading",
            f"s3://{bucket}/{key}",
            lambda: self._client.head_object(Bucket=bucket, Key=key),
        )
        return ObjectInfo(bucket, key, meta["ContentLength"], meta.get("ContentType"))

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.head(bucket, key)
        except InputNotFound:
            return False
        return True

    def delete(self, bucket: str, key: str) -> None:
        """Idempotent, like S3 itself: deleting a missing object succeeds."""
        self._call(
            "deleting",
            f"s3://{bucket}/{key}",
            lambda: self._client.delete_object(Bucket=bucket, Key=key),
            missing_ok=True,
        )

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=bucket, Prefix=prefix))
        where = f"s3://{bucket}/{prefix}"
        while (page := self._call("listing", where, lambda: next(pages, None))) is not None:
            for obj in page.get("Contents", []):
                yield ObjectInfo(bucket, obj["Key"], obj["Size"])

    def presign_get(self, bucket: str, key: str, expires_s: int) -> str:
        url: str = self._presign_client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url

    def presign_put(
        self, bucket: str, key: str, expires_s: int, content_type: str | None = None
    ) -> str:
        params = {"Bucket": bucket, "Key": key}
        if content_type:
            params["ContentType"] = content_type
        url: str = self._presign_client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_s
        )
        return url

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self._call("checking bucket", bucket, lambda: self._client.head_bucket(Bucket=bucket))
        except InputNotFound:
            self._call(
                "creating bucket",
                bucket,
                lambda: self._client.create_bucket(Bucket=bucket),
                missing_ok=True,
            )

    def check(self) -> None:
        bucket = self._settings.output_bucket
        self._call(
            "checking bucket",
            bucket,
            lambda: self._client.head_bucket(Bucket=bucket),
            missing_ok=True,
        )
