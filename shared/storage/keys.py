"""Object keys Darkroom reads and writes: which keys are safe, and where a tenant's uploads and
results go. Pure functions of strings, shared by the API, the CLI and the workers."""

from __future__ import annotations

import re
import uuid
from pathlib import PurePosixPath

from shared.config import DEFAULT_TENANT
from shared.errors import InvalidRequest

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_UPLOAD_KEY = re.compile(r"^(tenants/[a-z0-9-]+/)?uploads/[0-9a-f]{12,32}/(?P<path>.+)$")


def validate_key(key: str) -> str:
    """Refuse keys that could climb out of a prefix or a local folder."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidRequest(f"invalid object key {key!r}")
    if any(part in ("..", ".") for part in PurePosixPath(key).parts):
        raise InvalidRequest(f"invalid object key {key!r}: '.' and '..' segments are not allowed")
    return key


def object_prefix(tenant_id: str) -> str:
    """Where a tenant's inputs, uploads and results live in every bucket.

    The default tenant (API keys off) keeps the bucket's own layout, so an existing archive's
    keys work as they are.
    """
    return "" if tenant_id == DEFAULT_TENANT else f"tenants/{tenant_id}/"


def safe_filename(name: str) -> str:
    """A file name safe to put in an object key: no folders, no traversal, ASCII only."""
    base = PurePosixPath(name.replace("\\", "/")).name
    cleaned = _UNSAFE.sub("_", base).strip("._") or "upload"
    return cleaned[:200]


def safe_relative_path(path: str, *, max_depth: int = 16) -> str:
    """A relative path (``dim/a/2.png``) safe to put in an object key: each folder and the
    name made safe as :func:`safe_filename` makes names, ``.``/``..`` and empty parts dropped
    (a path can only go down), at most ``max_depth`` parts deep."""
    parts = [p for p in path.replace("\\", "/").split("/") if p.strip() not in ("", ".", "..")]
    if not parts:
        return safe_filename(path)
    kept = parts[-max_depth:]
    return "/".join(safe_filename(part) for part in kept)


def upload_key(
    filename: str, tenant_id: str = DEFAULT_TENANT, *, keep_folders: bool = False
) -> str:
    """A fresh key for an upload, under ``uploads/<random>/``; with ``keep_folders`` the name
    may be a relative path whose folders are kept (an archive's structure survives)."""
    name = safe_relative_path(filename) if keep_folders else safe_filename(filename)
    return f"{object_prefix(tenant_id)}uploads/{uuid.uuid4().hex}/{name}"


def is_upload_key(key: str) -> bool:
    """Whether Darkroom made this key for an upload (so retention may delete it)."""
    return bool(_UPLOAD_KEY.match(key))


def result_key(tenant_id: str, job_id: uuid.UUID, input_key: str, extension: str) -> str:
    """Deterministic, so a redelivered job overwrites its own result instead of adding one.
    An upload's folders inside its upload (``uploads/<random>/dim/a/2.png``) are kept:
    ``results/<job>/dim/a/2.<ext>``; any other input keeps only its name."""
    match = _UPLOAD_KEY.match(input_key)
    relative = PurePosixPath(match.group("path") if match else PurePosixPath(input_key).name)
    stem = relative.stem or "image"
    return f"{object_prefix(tenant_id)}results/{job_id}/{relative.with_name(stem + extension)}"


def preview_key(tenant_id: str, job_id: uuid.UUID, side: str) -> str:
    """Where a job's 512-px preview of its input (``before``) or result (``after``) goes."""
    return f"{object_prefix(tenant_id)}previews/{job_id}/{side}.jpg"
