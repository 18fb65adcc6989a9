"""``darkroom db``: upgrade, and the check pods run before they start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_photos import darkroom

pytestmark = pytest.mark.slow  # runs the darkroom CLI


def test_check_passes_only_once_the_database_is_migrated(tmp_path: Path) -> None:
    env = {"DARKROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}"}
    before = darkroom("db", "check", env=env, cwd=tmp_path)
    assert before.returncode == 1 and "darkroom db upgrade" in before.stderr
    assert darkroom("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    after = darkroom("db", "check", env=env, cwd=tmp_path)
    assert after.returncode == 0, after.stderr


def test_check_waits_through_a_database_that_is_not_up_then_gives_up(tmp_path: Path) -> None:
    env = {"DARKROOM_DATABASE_URL": "postgresql+psycopg2://x@127.0.0.1:1/x?connect_timeout=1"}
    result = darkroom("db", "check", "--wait", "3", env=env, cwd=tmp_path)
    assert result.returncode == 1 and "unreachable" in result.stderr
