"""Contact sheets: bounded sizes however big the photo, labels beside (not over) the pictures,
index pages for every photo, crops of the darkest flat region of the photos that need them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.contact_sheet import (
    ContactSheet,
    Panel,
    darkest_flat_window,
    side_by_side,
    thumbnail,
    with_text,
)


def grey(value: float, size: tuple[int, int]) -> np.ndarray:
    return np.full((*size, 3), value, np.float32)


def test_thumbnails_are_bounded_and_never_enlarged() -> None:
    assert thumbnail(grey(0.5, (1000, 2000)), 480).size == (480, 240)
    assert thumbnail(grey(0.5, (1032, 774)), 480).size == (360, 480)
    assert thumbnail(grey(0.5, (100, 50)), 480).size == (50, 100)


def test_text_goes_in_a_band_above_the_picture_and_widens_it_for_long_lines() -> None:
    picture = Image.new("RGB", (120, 40), (255, 0, 0))
    out = with_text(picture, ["a label long enough to be wider than the picture", "2nd"])
    band = out.height - picture.height
    assert band > 0 and out.width > picture.width
    pixels = np.asarray(out)
    assert (pixels[band:, :120] == (255, 0, 0)).all()  # the picture is untouched
    assert pixels[:band].max() > 200  # the text is drawn
    assert with_text(picture, ["ok"]).width == picture.width


def test_side_by_side_keeps_every_image() -> None:
    row = side_by_side([Image.new("RGB", (30, 20)), Image.new("RGB", (40, 50))])
    assert row.width >= 70 and row.height >= 50


def test_the_darkest_flat_window_skips_texture_and_crushed_black() -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:768, 0:1024]
    luma = 0.3 + 0.6 * rng.random((768, 1024))  # bright texture everywhere
    luma[0:256, 0:256] = 0.0  # crushed to black: nothing to judge
    # Darker on average than the flat square, but textured: not where to judge noise.
    luma[512:768, 0:256] = 0.06 * ((x[512:768, 0:256] // 4 + y[512:768, 0:256] // 4) % 2)
    luma[256:512, 640:896] = 0.04  # dark and flat: the one to look at
    pixels = np.repeat(luma[..., None], 3, axis=2).astype(np.float32)
    assert darkest_flat_window(pixels, 256) == (256, 640, 256)
    assert darkest_flat_window(pixels[:100, :80], 256)[2] == 80  # small photos: the whole side


def panels(value: float, size: tuple[int, int]) -> list[Panel]:
    return [
        Panel("input", grey(value, size), ("shadows 0.010!",)),
        Panel("model", grey(min(1.0, value * 4), size), ("shadows 0.300",)),
    ]


def test_a_sheet_writes_a_bounded_row_per_photo_index_pages_and_the_chosen_crops(
    tmp_path: Path,
) -> None:
    sheet = ContactSheet(tmp_path / "sheets", per_page=2, crop_photos=2, crop_side=64)
    (tmp_path / "sheets").mkdir()
    (tmp_path / "sheets" / "index-09.jpg").write_bytes(b"from an earlier, longer run")
    photos = {"a/one": 1.0, "a/two": 5.0, "b/three": 3.0}
    for number, (photo, priority) in enumerate(photos.items()):
        row = sheet.add(photo, "2000x1500", panels(0.05 * (number + 1), (1500, 2000)), priority)
        assert row == tmp_path / "sheets" / f"{photo}.jpg"
        with Image.open(row) as image:
            assert image.width < 2 * 480 + 100 and image.height < 360 + 120
    assert sheet.cropped == ["a/two", "b/three"]
    written = sheet.finish()
    assert [p.name for p in written] == ["index-01.jpg", "index-02.jpg", "crops.jpg"]
    assert not (tmp_path / "sheets" / "index-09.jpg").exists()
    first, second = (Image.open(tmp_path / "sheets" / f"index-0{n}.jpg").size for n in (1, 2))
    assert first[1] > 1.5 * second[1]  # two photos, then the third alone
    with Image.open(tmp_path / "sheets" / "crops.jpg") as crops:
        assert crops.height < 2 * (64 + 80)  # two crop rows at 100 %, not the whole photos
