"""Object storage: S3-compatible (``s3``) or a local folder for the embedded mode (``local``),
behind one protocol (``base``), with the rules for object keys (``keys``).

Both backends speak in (bucket, key) pairs, so jobs record the same thing whichever runs.
"""

from __future__ import annotations

from shared.config import Settings
from shared.storage.base import ObjectInfo, Storage
from shared.storage.keys import validate_key
from shared.storage.local import LocalStorage
from shared.storage.s3 import S3Storage

__all__ = ["LocalStorage", "ObjectInfo", "S3Storage", "Storage", "make_storage", "validate_key"]


def make_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        return S3Storage(settings)
    assert settings.storage_dir is not None
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    return LocalStorage(settings.storage_dir)
