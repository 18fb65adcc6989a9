"""Run Alembic migrations programmatically, so ``darkroom db upgrade`` needs no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def upgrade_embedded(database_url: str) -> None:
    """The embedded SQLite database is Darkroom's own to create and keep current; a server
    database is migrated explicitly (``darkroom db upgrade``), never behind an operator's back."""
    if database_url.startswith("sqlite"):
        upgrade(database_url)
