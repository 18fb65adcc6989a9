"""The real-dim set: which photos a run takes, how they are read, what it reports per method."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation import real_dim
from evaluation.contact_sheet import ContactSheet
from evaluation.real_dim import PhotoResult
from imaging.no_reference import MEASURES
from tests.conftest import jpeg_bytes, shared_dir

MAX_PIXELS = 100_000_000


def png_bytes(size: tuple[int, int], value: int) -> bytes:
    """A grey ramp starting at ``value`` (top left), rising 1 level a column."""
    ramp = value + np.arange(size[0], dtype=np.uint8)[None, :, None]
    out = io.BytesIO()
    Image.fromarray(np.broadcast_to(ramp, (size[1], size[0], 3)).copy()).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A small real-dim tree: three sets of JPEGs and PNGs, odd sizes, a file that is no photo."""
    root = tmp_path / "shared" / "eval" / "real-dim"
    files = {
        "alpha/b.png": png_bytes((77, 51), 20),
        "alpha/a.jpg": jpeg_bytes((64, 48), seed=1),
        "alpha/c.JPEG": jpeg_bytes((40, 30), seed=2),
        "beta/rotated.jpg": jpeg_bytes((40, 20), orientation=6, seed=3),
        "gamma/x.png": png_bytes((33, 65), 40),
        "gamma/y.png": png_bytes((50, 50), 60),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "stats.csv").write_text("set,file\n")
    (root / "alpha" / "notes.txt").write_text("not a photo")
    return tmp_path / "shared"


def test_every_photo_is_listed_in_set_then_name_order(shared: Path) -> None:
    names = [p.name for p in real_dim.list_photos(shared)]
    assert names == ["alpha/a", "alpha/b", "alpha/c", "beta/rotated", "gamma/x", "gamma/y"]


def test_a_limit_takes_photos_in_turn_from_each_set(shared: Path) -> None:
    assert [p.name for p in real_dim.list_photos(shared, 3)] == [
        "alpha/a",
        "beta/rotated",
        "gamma/x",
    ]
    four = [p.name for p in real_dim.list_photos(shared, 4)]
    assert four == ["alpha/a", "alpha/b", "beta/rotated", "gamma/x"]


def test_no_set_folder_means_no_photos(tmp_path: Path) -> None:
    assert real_dim.list_photos(tmp_path) == []


def test_photos_are_read_upright_as_jobs_read_them(shared: Path) -> None:
    photos = {p.name: p for p in real_dim.list_photos(shared)}
    rotated = real_dim.read_photo(photos["beta/rotated"], MAX_PIXELS)
    assert rotated.shape == (40, 20, 3)  # EXIF orientation 6: stored 40 x 20, shown 20 x 40
    grey = real_dim.read_photo(photos["alpha/b"], MAX_PIXELS)
    assert grey.shape == (51, 77, 3) and grey.dtype == np.float32
    assert grey[0, 0, 0] == pytest.approx(20 / 255) and grey[50, 76, 2] == pytest.approx(96 / 255)


def brighten(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 6 + 0.1, 0, 1)


def test_a_run_scores_every_method_on_every_photo_and_draws_them(
    shared: Path, tmp_path: Path
) -> None:
    photos = real_dim.list_photos(shared, 2)
    methods = real_dim.methods_for([("bright", brighten)])
    assert [name for name, _ in methods] == ["input", "classical", "bright"]
    sheet = ContactSheet(tmp_path / "sheets")
    results = list(
        real_dim.evaluate(
            photos, methods, max_pixels=MAX_PIXELS, sheet=sheet, save_dir=tmp_path / "out"
        )
    )
    assert [r.name for r in results] == ["alpha/a", "beta/rotated"]
    assert (results[1].width, results[1].height) == (20, 40)
    for result in results:
        assert list(result.figures) == ["input", "classical", "bright"]
        assert all(set(f) == set(MEASURES) for f in result.figures.values())
        assert result.figures["input"]["clipped_plus"] == 0
        assert result.figures["bright"]["mean_luma"] > result.figures["input"]["mean_luma"]
        assert set(result.seconds) == {"input", "classical", "bright"}
    assert (tmp_path / "sheets" / "alpha" / "a.jpg").is_file()
    assert (tmp_path / "out" / "beta" / "rotated-bright.png").is_file()
    sheet.finish()
    assert (tmp_path / "sheets" / "index-01.jpg").is_file()


def result(name: str, **model: float) -> PhotoResult:
    base = {"shadows": 0.3, "mean_luma": 0.4, "clipped_plus": 0.0, "noise": 0.5}
    figures = {**base, "chroma_ratio": 1.0, **model}
    return PhotoResult(
        name,
        10,
        10,
        {"input": {**base, "chroma_ratio": 1.0}, "m": figures},
        {"input": 0.0, "m": 2.0},
    )


def test_summaries_give_means_and_how_many_photos_miss_each_target() -> None:
    results = [result("a", shadows=0.1), result("b", shadows=0.25), result("c", mean_luma=0.6)]
    summary = {s.method: s for s in real_dim.summarise(results)}
    assert list(summary) == ["input", "m"]
    model = summary["m"]
    assert model.means["shadows"] == pytest.approx((0.1 + 0.25 + 0.3) / 3)
    assert model.misses == {
        "shadows": 1,
        "mean_luma": 1,
        "clipped_plus": 0,
        "noise": 0,
        "chroma_ratio": 0,
    }
    assert model.seconds_per_image == 2.0 and model.photos == 3
    assert summary["input"].misses["shadows"] == 0


def test_the_worst_photos_are_those_furthest_past_the_target() -> None:
    results = [
        result("a", mean_luma=0.45),
        result("b", mean_luma=0.2),
        result("c", mean_luma=0.58),
        result("d", noise=3.0),
    ]
    assert real_dim.worst(results, "m", "mean_luma", 2) == [("b", 0.2), ("c", 0.58)]
    assert real_dim.worst(results, "m", "noise", 1) == [("d", 3.0)]


def test_captions_mark_the_figures_that_miss() -> None:
    first, second = real_dim.caption(result("a", shadows=0.1, noise=2.0).figures["m"])
    assert "shadows 0.100!" in first and "luma 0.400" in first and "luma 0.400!" not in first
    assert "noise 2.00!" in second and "chroma 1.00" in second and "chroma 1.00!" not in second


def test_the_json_holds_every_figure_and_reads_back() -> None:
    data = json.loads(json.dumps(real_dim.as_json([result("a"), result("b", noise=2.0)])))
    assert [p["photo"] for p in data["photos"]] == ["a", "b"]
    assert data["photos"][1]["figures"]["m"]["noise"] == 2.0
    assert data["targets"]["shadows"]["low"] == 0.2
    assert data["summary"][1]["misses"]["noise"] == 1


def test_the_shared_set_has_its_45_photos_in_8_sets() -> None:
    folder = shared_dir()
    if not (folder / "eval" / "real-dim").is_dir():
        pytest.skip(f"no real-dim photos at {folder}; set DARKROOM_SHARED_DIR")
    photos = real_dim.list_photos(folder)
    assert len(photos) == 45
    assert len({p.name.split("/")[0] for p in photos}) == 8
    assert len({p.name.split("/")[0] for p in real_dim.list_photos(folder, 8)}) == 8
    npe = next(p for p in photos if p.name == "npe/NPE_89")
    assert real_dim.read_photo(npe, MAX_PIXELS).shape == (1032, 774, 3)


def test_the_crops_go_to_the_photos_where_a_model_left_most_noise(
    shared: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)

    def grainy_when_20_wide(image: np.ndarray) -> np.ndarray:
        if image.shape[1] != 20:
            return np.full_like(image, 0.4)
        return np.clip(0.4 + rng.normal(0, 0.05, image.shape), 0, 1).astype(np.float32)

    sheet = ContactSheet(tmp_path / "sheets", crop_photos=1)
    methods = real_dim.methods_for([("model", grainy_when_20_wide)])
    photos = real_dim.list_photos(shared, 3)
    list(real_dim.evaluate(photos, methods, max_pixels=MAX_PIXELS, sheet=sheet))
    assert sheet.cropped == ["beta/rotated"]  # 20 x 40 upright
