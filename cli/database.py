"""``darkroom db``: the database schema."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from cli.common import console, fail, redact
from shared.config import get_settings
from shared.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode=None)


@app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to DARKROOM_DATABASE_URL."""
    settings = get_settings()
    migrate.upgrade(settings.database_url, revision)
    console.print(f"database at {redact(settings.database_url)} is at revision {revision}")


@app.command("check")
def db_check(
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the database to be migrated.")
    ] = 0,
) -> None:
    """Exit 0 once DARKROOM_DATABASE_URL is at this code's newest migration, else 1.

    Pods of the API and the workers run it first (an init container), so they start only once
    the migration Job has finished; with --wait it keeps asking, through a database that is not
    up yet, for that many seconds.
    """
    settings = get_settings()
    head = migrate.head_revision()
    deadline = time.monotonic() + wait
    while True:
        try:
            current: str | None = migrate.current_revision(settings.database_url)
            problem = f"at revision {current}, not {head}: run `darkroom db upgrade`"
        except SQLAlchemyError as exc:
            current, problem = None, f"unreachable: {exc.__class__.__name__}"
        if current == head:
            console.print(f"database at {redact(settings.database_url)} is at revision {head}")
            return
        if time.monotonic() >= deadline:
            raise fail(f"database at {redact(settings.database_url)} is {problem}")
        time.sleep(2.0)
