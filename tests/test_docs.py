"""docs/how-it-works.md: its pictures exist, are small, and are made by the committed script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.catalogue import CATALOGUE, PRESETS
from tests.conftest import shared_dir

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "how-it-works.md"
PICTURES = REPO / "docs" / "pictures"
MAX_BYTES = 200_000
PUBLISHED = ["zero-dce", "zero-dce-pp", "sgz", "sci-medium", "sci-difficult", "iat-lol"]


def _referenced() -> list[str]:
    return re.findall(r"\]\(pictures/([^)]+)\)", DOC.read_text())


def test_every_picture_is_referenced_committed_small_and_a_jpeg() -> None:
    referenced = _referenced()
    assert referenced and sorted(referenced) == sorted(p.name for p in PICTURES.iterdir())
    for name in referenced:
        data = (PICTURES / name).read_bytes()
        assert data[:3] == b"\xff\xd8\xff", name
        assert len(data) < MAX_BYTES, name


def test_the_document_covers_every_lightweight_model_and_preset() -> None:
    text = DOC.read_text()
    for name in [*PUBLISHED, "iat-exposure", "dncnn-color", "light-curve", "light-retinex"]:
        assert f"`{name}`" in text or name in text, name
        assert name in CATALOGUE or name in PRESETS, name
    assert "EVAL-TABLE" not in text and "SUITS-TABLE" not in text


@pytest.mark.slow
def test_one_command_regenerates_the_pictures(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "how-it-works-pictures.py"),
            "--out",
            str(tmp_path),
        ],
        env={"DARKROOM_SHARED_DIR": str(shared_dir()), "DARKROOM_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    made = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert made == sorted(_referenced())
    assert all((tmp_path / name).stat().st_size < MAX_BYTES for name in made)
