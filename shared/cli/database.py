"""``darkroom db``: the database schema."""

from __future__ import annotations

import typer

from shared.cli.common import console, redact
from shared.config import get_settings
from shared.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode=None)


@app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to DARKROOM_DATABASE_URL."""
    settings = get_settings()
    migrate.upgrade(settings.database_url, revision)
    console.print(f"database at {redact(settings.database_url)} is at revision {revision}")
