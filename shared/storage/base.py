"""What every object store offers Darkroom: (bucket, key) pairs in, bytes and typed errors out.

A missing object is ``InputNotFound`` (the job's fault, not retried); everything else that
goes wrong is ``StorageError`` (retryable). Each backend translates its own errors into these.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


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
