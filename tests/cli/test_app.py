"""The command line as a person reads it: plain-text help, every group and command present."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from shared.config import get_settings

GROUPS = ["db", "buckets", "models", "tenants", "keys"]
COMMANDS = ["serve", "worker", "cleanup", "submit", "status", "report", "eval"]
MARKUP = ["``", ":class:", ":func:", "[bold]", "[red]", "╭", "│"]


@pytest.mark.parametrize("argv", [[], *([name] for name in GROUPS + COMMANDS)])
def test_help_is_plain_text(argv: list[str]) -> None:
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    leaked = [mark for mark in MARKUP if mark in result.output]
    assert leaked == [], result.output


def test_the_top_level_help_lists_every_command_and_group() -> None:
    output = CliRunner().invoke(app, ["--help"]).output
    for name in GROUPS + COMMANDS:
        assert f"\n  {name} " in output, name


def test_long_lines_are_not_broken_at_the_terminal_width(tmp_path: Path) -> None:
    deep = tmp_path / ("a-long-folder-name-" * 4) / "darkroom.db"
    url = f"sqlite:///{deep}"
    deep.parent.mkdir(parents=True)
    get_settings.cache_clear()  # the command reads the environment given here
    try:
        result = CliRunner().invoke(app, ["db", "upgrade"], env={"DARKROOM_DATABASE_URL": url})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    # stdout only: Alembic logs to stderr through whatever handler an earlier test configured.
    assert f"database at {url} is at revision head" in result.stdout.splitlines()
