"""The Alembic migration builds the schema the models describe, on PostgreSQL and on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from shared.db.migrate import downgrade, upgrade
from shared.db.tables import Base


def _assert_matches_models(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version is not None
    assert {"jobs", "batches"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def _round_trip(url: str) -> None:
    upgrade(url)
    _assert_matches_models(url)
    downgrade(url, "base")
    engine = create_engine(url)
    assert not {"jobs", "batches"} & set(inspect(engine).get_table_names())
    engine.dispose()
    upgrade(url)
    _assert_matches_models(url)


def test_migration_on_sqlite(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'darkroom.db'}")


def test_migration_on_postgresql(empty_postgres_url: str) -> None:
    _round_trip(empty_postgres_url)


@pytest.mark.parametrize(
    "column",
    ["download_s", "decode_s", "restore_s", "measure_s", "encode_s", "upload_s", "device_s"],
)
def test_jobs_table_records_every_stage(column: str) -> None:
    assert column in Base.metadata.tables["jobs"].columns
