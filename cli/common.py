"""What every ``darkroom`` command shares: the consoles, a failure that exits 1 with a plain
message, and the settings with the embedded database brought up to date."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import make_url

from shared.config import Settings, get_settings
from shared.db.migrate import upgrade_embedded

# soft_wrap: a long line (a path, a URL, an error message) stays one line, as a person copies
# it and as scripts read it, instead of being broken at the terminal's width.
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def load_settings() -> Settings:
    """The settings, after creating or upgrading the embedded SQLite database (a server
    database is only ever migrated by ``darkroom db upgrade``)."""
    current = get_settings()
    upgrade_embedded(current.database_url)
    return current


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error; raise what this returns to exit with status 1."""
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def rich_progress(label: str, *, count_failed: bool = False) -> Progress:
    failed = [TextColumn("{task.fields[failed]} failed")] if count_failed else []
    return Progress(
        TextColumn(f"[bold]{label}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        *failed,
        TimeRemainingColumn(),
        console=console,
    )
