"""The command line as a person reads it: plain-text help, every group and command present."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from shared.cli import app

GROUPS = ["db", "models", "tenants", "keys"]
COMMANDS = ["serve", "worker", "cleanup", "submit", "status", "eval"]
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
