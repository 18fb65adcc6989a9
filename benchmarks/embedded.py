"""A fresh embedded Darkroom for the benchmarks that run the real pipeline in-process."""

from __future__ import annotations

from pathlib import Path

from shared.config import Settings
from shared.db.migrate import upgrade_embedded
from shared.storage import Storage, make_storage


def embedded_home(home: Path) -> tuple[Settings, Storage]:
    """Settings for ``home`` (migrated SQLite, a local object folder) and its storage, with the
    input and output buckets made: what ``darkroom submit`` sets up on a fresh machine."""
    settings = Settings(home=home)
    upgrade_embedded(settings.database_url)
    storage = make_storage(settings)
    for bucket in (settings.input_bucket, settings.output_bucket):
        storage.ensure_bucket(bucket)
    return settings, storage
