"""``darkroom eval``: the sets and models it runs, what real-dim prints and writes, what it refuses.

Run in this process (Typer's runner), on tiny photos, the bundled darkroom-night-v1 weights and
the tests' small random MIRNet, so a real-dim run takes seconds and needs no weights that may not
have shipped yet; the reference-set figures themselves are the model card's business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli import app
from cli import evaluate as cli
from shared.config import get_settings
from tests.conftest import jpeg_bytes, shared_dir

pytestmark = pytest.mark.slow  # runs the night model: seconds a test

METHOD_ROW = re.compile(r"^[│┃]\s*(\S+)\s*[│┃]", re.MULTILINE)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A tiny real-dim set: two sets, a portrait and a landscape photo of odd sizes."""
    root = tmp_path / "shared" / "eval" / "real-dim"
    for name, size, seed in [("dusk/a.jpg", (72, 40), 1), ("night/b.jpg", (35, 66), 2)]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(jpeg_bytes(size, seed=seed))
    (root / "night" / "c.jpg").write_bytes(jpeg_bytes((48, 48), seed=3))
    return tmp_path / "shared"


@pytest.fixture(autouse=True)
def fresh_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # the embedded state and the default sheet folder go here
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def darkroom_eval(*args: str, shared: Path, models: Path | None = None) -> Result:
    env = {"DARKROOM_SHARED_DIR": str(shared), "DARKROOM_DEVICE": "cpu", "COLUMNS": "200"}
    if models is not None:
        env["DARKROOM_MODEL_DIR"] = str(models)
    return CliRunner().invoke(app, ["eval", *args], env=env)


def test_real_dim_prints_the_targets_and_writes_figures_and_sheets(
    photos: Path, tmp_path: Path, model_dir: Path
) -> None:
    result = darkroom_eval(
        "--set", "real-dim", "--limit", "2", "--json", "out/f.json",
        "--model", "darkroom-night-v1", "--model", "mirnet-lol", shared=photos, models=model_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    methods = ["input", "classical", "darkroom-night-v1", "mirnet-lol"]
    table = result.output.split("real-dim, 2 photos")[1].split("photos furthest")[0]
    assert METHOD_ROW.findall(table)[-4:] == methods
    for target in (">= 0.20", "0.30-0.50", "<= 0.01", "<= 1.00", "<= 1.30"):
        assert target in result.output

    figures = json.loads((tmp_path / "out" / "f.json").read_text())
    assert [p["photo"] for p in figures["photos"]] == ["dusk/a", "night/b"]  # one from each set
    assert list(figures["photos"][1]["figures"]) == methods
    night = figures["photos"][1]["figures"]["darkroom-night-v1"]
    assert night["mean_luma"] > figures["photos"][1]["figures"]["input"]["mean_luma"]
    assert {s["method"] for s in figures["summary"]} == set(methods)

    sheets = tmp_path / "eval-real-dim"  # the default folder
    assert sorted(p.relative_to(sheets).as_posix() for p in sheets.rglob("*.jpg")) == [
        "crops.jpg",
        "dusk/a.jpg",
        "index-01.jpg",
        "night/b.jpg",
    ]


def test_real_dim_defaults_to_the_first_and_the_current_night_model() -> None:
    assert cli._models_for("real-dim", None) == ["darkroom-night-v1", "darkroom-night"]
    assert cli._models_for("lol-sample", None) == ["darkroom-night"]
    assert cli._models_for("real-dim", ["a", "b", "a"]) == ["a", "b"]


def test_models_asked_for_replace_the_defaults_on_real_dim(photos: Path, tmp_path: Path) -> None:
    result = darkroom_eval(
        "--set", "real-dim", "--limit", "1", "--model", "darkroom-night-v1", "--sheet", "s",
        "--json", "f.json", shared=photos,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads((tmp_path / "f.json").read_text())
    assert list(figures["photos"][0]["figures"]) == ["input", "classical", "darkroom-night-v1"]
    assert (tmp_path / "s" / "dusk" / "a.jpg").is_file()
    assert not (tmp_path / "eval-real-dim").exists()


def test_missing_weights_fail_before_any_photo_runs(photos: Path, tmp_path: Path) -> None:
    result = darkroom_eval(
        "--set", "real-dim", "--model", "mirnet-lol", shared=photos, models=tmp_path / "none"
    )
    assert result.exit_code == 1 and "model_unavailable" in result.output
    assert not (tmp_path / "eval-real-dim").exists()


def test_the_model_option_repeats_on_the_reference_sets_too(model_dir: Path) -> None:
    folder = shared_dir()
    if not (folder / "eval" / "lol-sample").is_dir():
        pytest.skip(f"no evaluation data at {folder}; set DARKROOM_SHARED_DIR")
    result = darkroom_eval(
        "--set", "lol-sample", "--limit", "1", "--model", "darkroom-night-v1",
        "--model", "mirnet-lol", shared=folder.resolve(), models=model_dir,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = METHOD_ROW.findall(result.output)
    assert rows[-4:] == ["input", "classical", "darkroom-night-v1", "mirnet-lol"]


def test_unknown_sets_and_models_and_real_dim_options_without_real_dim_are_refused(
    photos: Path,
) -> None:
    result = darkroom_eval("--set", "nope", shared=photos)
    assert result.exit_code == 1 and "'nope'" in result.output
    result = darkroom_eval("--set", "lol-sample", "--json", "f.json", shared=photos)
    assert result.exit_code == 1 and "--set real-dim" in result.output
    result = darkroom_eval("--set", "real-dim", "--model", "no-such-model", shared=photos)
    assert result.exit_code == 1 and "model_not_found" in result.output


def test_an_empty_real_dim_folder_is_an_error(tmp_path: Path) -> None:
    result = darkroom_eval(
        "--set", "real-dim", "--model", "darkroom-night-v1", shared=tmp_path / "nothing"
    )
    assert result.exit_code == 1 and "no images for 'real-dim'" in result.output


def test_the_help_names_each_sets_default_models() -> None:
    # Compared without white space: the help is wrapped at the terminal width, hyphens too.
    output = "".join(CliRunner().invoke(app, ["eval", "--help"]).output.split())
    assert "darkroom-nightonthereferencesets" in output
    assert "darkroom-night-v1anddarkroom-nightonreal-dim" in output


def test_the_cli_names_the_sets_the_workers_know() -> None:
    from evaluation.real_dim import REAL_DIM
    from evaluation.reference_sets import SETS

    assert cli.REFERENCE_SETS == SETS and cli.REAL_DIM == REAL_DIM
