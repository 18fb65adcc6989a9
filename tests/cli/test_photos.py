"""The ``darkroom`` command in the embedded mode: SQLite, a local folder, jobs run in-process."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import jpeg_bytes
from tests.services import BIN

pytestmark = pytest.mark.slow  # runs the darkroom CLI: seconds a test


def darkroom(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    return subprocess.run(
        [str(BIN / "darkroom"), *args],
        env={**clean, "COLUMNS": "200", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "trip").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg_bytes((64, 48), seed=1))
    (folder / "trip" / "b.jpg").write_bytes(jpeg_bytes((40, 40), 6, seed=2))
    (folder / "notes.txt").write_text("not a photo, not submitted")
    return folder


def test_submit_restores_a_folder_in_process(photos: Path, tmp_path: Path, model_dir: Path) -> None:
    env = {"DARKROOM_MODEL_DIR": str(model_dir), "DARKROOM_DEVICE": "cpu"}
    result = darkroom(
        "submit", str(photos), "--model", "mirnet-lol", "--out", "restored", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 succeeded, 0 failed" in result.stdout
    restored = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("restored/**/*.*"))
    assert restored == ["restored/a.jpg", "restored/trip/b.jpg"]
    assert Image.open(tmp_path / "restored" / "a.jpg").size == (64, 48)
    assert Image.open(tmp_path / "restored" / "trip" / "b.jpg").size == (40, 40)
    # The embedded state lives in ./.darkroom: SQLite and the local object folder.
    assert (tmp_path / ".darkroom" / "darkroom.db").is_file()

    batch_id = re.search(r"batch (\S+) submitted", result.stdout).group(1)  # type: ignore[union-attr]
    status = darkroom("status", batch_id, env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert re.search(r"succeeded\s+.\s+2", status.stdout)
    assert "2/2 done" in status.stdout


def test_missing_weights_fail_jobs_with_guidance(photos: Path, tmp_path: Path) -> None:
    env = {"DARKROOM_MODEL_DIR": str(tmp_path / "empty-models")}
    result = darkroom("submit", str(photos), "--model", "mirnet-lol", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "0 succeeded, 2 failed" in result.stdout
    message = " ".join(result.stderr.split())
    assert "model_unavailable" in message
    assert "low-light-event-img-enhancer" in message  # where to download it
    assert "DARKROOM_MODEL_DIR" in message  # which setting takes it
    assert not (tmp_path / "darkroom-results").exists()


def test_unknown_model_and_empty_input_are_refused(tmp_path: Path, photos: Path) -> None:
    result = darkroom("submit", str(photos), "--model", "nope", env={}, cwd=tmp_path)
    assert result.returncode == 1 and "unknown model 'nope'" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = darkroom("submit", str(empty), env={}, cwd=tmp_path)
    assert result.returncode != 0


def test_models_lists_the_catalogue_with_weight_state(tmp_path: Path, model_dir: Path) -> None:
    result = darkroom("models", env={"DARKROOM_MODEL_DIR": str(model_dir)}, cwd=tmp_path)
    assert result.returncode == 0
    assert re.search(r"mirnet-lol .* yes ", result.stdout)
    assert re.search(r"mirnet-finetuned .* no ", result.stdout)


def test_eval_prints_the_model_next_to_the_input_and_a_baseline(tmp_path: Path) -> None:
    from tests.conftest import shared_dir

    env = {"DARKROOM_SHARED_DIR": str(shared_dir())}
    result = darkroom("eval", "--set", "lol-sample", "--limit", "2", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {
        cells[0]: float(cells[1])
        for line in result.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) == 4
        and cells[1].replace(".", "").isdigit()
    }
    assert set(rows) == {"input", "classical", "darkroom-night"}
    # The quality bar is test_night_v2_weights' (Kodak); here the model must clearly restore:
    # v2 as trained so far gives +7.9 dB on these two LoL photos (v1 gave more than +8).
    assert rows["darkroom-night"] > rows["input"] + 6
