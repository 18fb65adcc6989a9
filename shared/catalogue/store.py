"""Where model weights live, and which models are ready to run.

The *model store* is the ``DARKROOM_MODEL_BUCKET`` bucket (under ``DARKROOM_MODEL_PREFIX``) when
one is configured, else the local model folder ``DARKROOM_MODEL_DIR``. It holds checkpoint files
and, for models an operator registered with ``darkroom models add``, a JSON manifest beside each
one, so the API and every worker see the same registrations without a database migration.
Workers copy weights from the store into their local model folder once and verify SHA-256.

No torch here: the API imports this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from shared.catalogue.entries import CATALOGUE, PRESETS, ModelEntry
from shared.config import Settings
from shared.errors import (
    InputNotFound,
    InvalidRequest,
    ModelNotAllowed,
    ModelNotFound,
    ModelUnavailable,
)
from shared.storage import Storage

log = logging.getLogger(__name__)

BUNDLED_WEIGHTS = Path(__file__).resolve().with_name("weights")
"""Weights that ship inside the package (Darkroom's own models), beside this module."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequest(
            f"invalid model name {name!r}: use lower-case letters, digits, '.', '_' and '-'"
        )
    return name


class ModelStore:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        assert settings.model_dir is not None
        self.settings = settings
        self.storage = storage
        self.local_dir: Path = settings.model_dir

    # --- where things are ---------------------------------------------------------------------

    @property
    def remote(self) -> bool:
        return self.settings.model_bucket is not None

    def _key(self, filename: str) -> str:
        return f"{self.settings.model_prefix}{filename}"

    def describe(self, filename: str) -> str:
        if self.remote:
            return f"s3://{self.settings.model_bucket}/{self._key(filename)}"
        return str((self.local_dir / filename).resolve())

    def _read(self, filename: str) -> bytes | None:
        if self.remote:
            try:
                return self.storage.get(self.settings.model_bucket or "", self._key(filename))
            except InputNotFound:
                return None
        path = self.local_dir / filename
        return path.read_bytes() if path.is_file() else None

    def _write(self, filename: str, source: Path | bytes) -> None:
        if self.remote:
            data = source.read_bytes() if isinstance(source, Path) else source
            self.storage.put(self.settings.model_bucket or "", self._key(filename), data)
            return
        self.local_dir.mkdir(parents=True, exist_ok=True)
        target = self.local_dir / filename
        part = target.with_name(target.name + ".part")
        if isinstance(source, Path):
            shutil.copyfile(source, part)
        else:
            part.write_bytes(source)
        part.replace(target)

    def _exists(self, filename: str) -> bool:
        if self.remote:
            return self.storage.exists(self.settings.model_bucket or "", self._key(filename))
        return (self.local_dir / filename).is_file()

    # --- the catalogue plus registrations -----------------------------------------------------

    def registered(self) -> Iterator[ModelEntry]:
        if self.remote:
            names = [
                obj.key.removeprefix(self.settings.model_prefix)
                for obj in self.storage.list(
                    self.settings.model_bucket or "", self.settings.model_prefix
                )
                if obj.key.endswith(".json")
            ]
        else:
            names = [p.name for p in sorted(self.local_dir.glob("*.json"))]
        for name in names:
            data = self._read(name)
            if data is not None:
                yield manifest_entry(json.loads(data))

    def entries(self) -> list[ModelEntry]:
        registered = {e.name: e for e in self.registered() if e.name not in CATALOGUE}
        return [*CATALOGUE.values(), *registered.values()]

    def resolve(self, name: str) -> ModelEntry:
        if name in CATALOGUE:
            return CATALOGUE[name]
        data = self._read(f"{name}.json") if _NAME.match(name) else None
        if data is None:
            known = ", ".join(sorted(e.name for e in self.entries()))
            raise ModelNotFound(f"unknown model {name!r}; known models: {known}")
        return manifest_entry(json.loads(data))

    def chain(self, model: str, task: str | None = None) -> list[tuple[ModelEntry, str | None]]:
        """The steps a job's ``model`` names: one model, a preset, or ``a+b:task+c``; each
        step's entry and the task it runs (validated). ``task`` is the job's ``task`` option,
        which only a single model takes: a chain names each step's task itself."""
        parts = PRESETS.get(model, model).split("+")
        if len(parts) > 1 and task is not None:
            raise InvalidRequest("a chain names each step's task as 'model:task', not with 'task'")
        steps = []
        for part in parts:
            name, _, step_task = part.strip().partition(":")
            entry = self.resolve(name)
            self.check_allowed(entry)
            steps.append((entry, entry.check_task(step_task or task)))
        return steps

    def allowed(self, entry: ModelEntry) -> bool:
        """Whether jobs may use the entry under this deployment's licence setting."""
        return not entry.noncommercial or self.settings.allow_noncommercial_models

    def check_allowed(self, entry: ModelEntry) -> None:
        """Refuse a non-commercial model unless the operator has allowed them: every way a job
        names a model (API, CLI, chains, presets, ``darkroom eval``) comes through here."""
        if not self.allowed(entry):
            raise ModelNotAllowed(
                f"model {entry.name!r} may not be used commercially (licence: {entry.licence}); "
                "an operator who uses it for research only can allow such models with "
                "DARKROOM_ALLOW_NONCOMMERCIAL_MODELS=true"
            )

    def ready(self, entry: ModelEntry) -> bool:
        """Whether a worker can load the entry's weights without an operator's help."""
        return (
            (entry.bundled and (BUNDLED_WEIGHTS / entry.weights_file).is_file())
            or (self.local_dir / entry.weights_file).is_file()
            or self._exists(entry.weights_file)
        )

    # --- changes ------------------------------------------------------------------------------

    def add(self, entry: ModelEntry, weights: Path) -> ModelEntry:
        """Store a checkpoint and its manifest; the entry's sha256 is computed here."""
        validate_name(entry.name)
        if entry.name in CATALOGUE:
            raise InvalidRequest(f"{entry.name!r} is a catalogue model; choose another name")
        entry = dataclasses.replace(entry, sha256=sha256_file(weights))
        self._write(entry.weights_file, weights)
        self._write(f"{entry.name}.json", json.dumps(manifest(entry), indent=2).encode())
        return entry

    def put_weights(self, entry: ModelEntry, weights: Path, expected: str | None = None) -> str:
        """Store a downloaded checkpoint after checking its SHA-256 against the published one
        (or ``expected``). Without either, the digest of this download is recorded beside the
        file, and every later fetch is verified against it."""
        digest = sha256_file(weights)
        wanted = entry.sha256 or expected
        if wanted and digest != wanted.lower():
            raise ModelUnavailable(
                f"checkpoint for {entry.name!r} has SHA-256 {digest}, expected {wanted}"
            )
        self._write(entry.weights_file, weights)
        self._write(f"{entry.weights_file}.sha256", digest.encode())
        return digest

    def expected_sha256(self, entry: ModelEntry) -> str | None:
        if entry.sha256:
            return entry.sha256
        recorded = self._read(f"{entry.weights_file}.sha256")
        return recorded.decode().strip() if recorded else None

    def local_weights(self, entry: ModelEntry) -> Path:
        """A verified local copy of the entry's weights, fetched from the store once."""
        local = self.local_dir / entry.weights_file
        if (
            not local.is_file()
            and entry.bundled
            and (BUNDLED_WEIGHTS / entry.weights_file).is_file()
        ):
            return BUNDLED_WEIGHTS / entry.weights_file
        if not local.is_file() and self.remote:
            data = self._read(entry.weights_file)
            if data is not None:
                self.local_dir.mkdir(parents=True, exist_ok=True)
                part = local.with_name(local.name + ".part")
                part.write_bytes(data)
                part.replace(local)
        if not local.is_file():
            raise unavailable(entry, self)
        expected = self.expected_sha256(entry)
        if expected and sha256_file(local) != expected:
            log.error(
                "weights for model %r at %s do not match SHA-256 %s; delete the file and run "
                "`darkroom models pull %s`",
                entry.name,
                local,
                expected,
                entry.name,
            )
            raise ModelUnavailable(
                f"model {entry.name!r} is not usable on this server: its weights are damaged"
            )
        return local


def unavailable(entry: ModelEntry, store: ModelStore) -> ModelUnavailable:
    """The error for a model whose weights are missing, with the operator's instructions
    logged here. The error's message is what the tenant reads (``GET /v1/jobs/{id}``, webhooks),
    so it names the model only: the server's paths, buckets and commands are the operator's
    business, in the log and in ``darkroom models list``."""
    where = " or ".join(entry.source_urls) or "its publisher"
    local = (store.local_dir / entry.weights_file).resolve()
    # With a model bucket, workers fetch from it; without one the folder is the store.
    shared_copy = f", or upload it to {store.describe(entry.weights_file)}" if store.remote else ""
    log.error(
        "weights for model %r are not installed: run `darkroom models pull %s`, or download the "
        "published checkpoint from %s and save it as %s (the folder is set by "
        "DARKROOM_MODEL_DIR)%s",
        entry.name,
        entry.name,
        where,
        local,
        shared_copy,
    )
    return ModelUnavailable(f"model {entry.name!r} is not installed on this server")


_MANIFEST_FIELDS = (
    "name",
    "task",
    "architecture",
    "family",
    "description",
    "weights_file",
    "sha256",
    "licence",
    "scale",
    "tasks",
)


def manifest(entry: ModelEntry) -> dict[str, object]:
    return {name: getattr(entry, name) for name in _MANIFEST_FIELDS}


def manifest_entry(data: dict[str, object]) -> ModelEntry:
    values = {name: data[name] for name in _MANIFEST_FIELDS if name in data}
    if "tasks" in values:
        values["tasks"] = tuple(values["tasks"])  # type: ignore[arg-type]
    return ModelEntry(**values)  # type: ignore[arg-type]
