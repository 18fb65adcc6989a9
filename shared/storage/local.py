"""The embedded mode's object store: buckets are sub-folders of one local folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from shared.errors import InputNotFound, InvalidRequest, StorageError
from shared.storage.base import ObjectInfo
from shared.storage.keys import validate_key


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
