"""Quality signals and previews: cheap copies, signals that move the way their names say."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from imaging import quality


def scene(seed: int = 0, size: tuple[int, int] = (384, 512)) -> np.ndarray:
    """A photo-like image: smooth gradients plus edges of blocks, mid-grey on average."""
    rng = np.random.default_rng(seed)
    height, width = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    base = 0.5 + 0.2 * np.sin(8 * x) * np.cos(6 * y)
    blocks = rng.random((height // 16 + 1, width // 16 + 1))
    edges = np.kron(blocks, np.ones((16, 16)))[:height, :width] * 0.3
    grey = np.clip(base + edges - 0.15, 0, 1)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32)


def test_shrink_is_a_box_average_to_the_preview_side() -> None:
    image = np.random.default_rng(1).random((1030, 2050, 3)).astype(np.float32)
    small = quality.shrink(image)
    factor = 5  # ceil(2050 / 512)
    assert small.shape == (1030 // factor, 2050 // factor, 3)
    expected = image[:factor, :factor].mean(axis=(0, 1))
    assert np.allclose(small[0, 0], expected, atol=1e-6)
    assert quality.shrink(image[:300, :400]).shape == (300, 400, 3)  # small enough already


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 2000, 3), (2000, 3, 3), (2, 2, 3)])
def test_odd_shapes_are_measured_without_error(shape: tuple[int, int, int]) -> None:
    image = np.random.default_rng(2).random(shape).astype(np.float32)
    measured = quality.measure(image, image)
    assert max(quality.shrink(image).shape[:2]) <= quality.PREVIEW_SIDE
    assert set(measured.quality["input"]) == set(measured.quality["result"])
    assert all(np.isfinite(v) for v in measured.quality["input"].values())


def test_brightness_and_clipping() -> None:
    photo = scene()
    dark, blown = photo * 0.05, np.clip(photo * 3, 0, 1)
    assert quality.signals(dark)["mean_luma"] < 0.05 < quality.signals(photo)["mean_luma"]
    assert quality.signals(dark)["black_share"] > quality.signals(photo)["black_share"]
    assert quality.signals(blown)["clipped_share"] > 0.3
    assert quality.signals(photo)["clipped_share"] == 0.0


def test_blur_lowers_sharpness_and_darkness_alone_does_not() -> None:
    photo = scene()
    pil = Image.fromarray((photo * 255).astype(np.uint8))
    blurred = np.asarray(pil.filter(ImageFilter.GaussianBlur(6)), dtype=np.float32) / 255
    sharp = quality.signals(photo)["sharpness"]
    assert quality.signals(blurred)["sharpness"] < 0.6 * sharp
    assert quality.signals(photo * 0.1)["sharpness"] == pytest.approx(sharp, rel=0.1)


def test_noise_relative_to_brightness_survives_brightening() -> None:
    rng = np.random.default_rng(3)
    dim = np.clip(scene() * 0.1 + rng.normal(0, 0.01, (384, 512, 3)), 0, 1).astype(np.float32)
    brightened = np.clip(dim * 4, 0, 1)
    before, after = quality.signals(dim), quality.signals(brightened)
    assert after["noise"] > 3 * before["noise"]
    assert after["relative_noise"] == pytest.approx(before["relative_noise"], rel=0.15)


def test_a_colour_cast_is_measured_away_from_neutral() -> None:
    grey = scene()
    orange = np.clip(grey * np.array([1.0, 0.6, 0.25], dtype=np.float32), 0, 1)
    assert quality.signals(grey)["colour_cast"] == pytest.approx(1.0, abs=0.01)
    cast = quality.signals(orange)
    assert cast["colour_cast"] > 4 and cast["cast_b"] > 0  # b* > 0: towards yellow


def test_previews_are_small_jpegs_of_input_and_result() -> None:
    source = scene(size=(3000, 4000)) * 0.1
    result = scene(size=(6000, 8000))  # a super-resolution model's larger output
    measured = quality.measure(source, result)
    for data in (measured.before_preview, measured.after_preview):
        image = Image.open(io.BytesIO(data))
        assert image.format == "JPEG" and max(image.size) == 500  # 4000 / ceil(4000 / 512)
    before = np.asarray(Image.open(io.BytesIO(measured.before_preview)), dtype=np.float32) / 255
    assert before.mean() < 0.1
    assert measured.quality["input"]["mean_luma"] < measured.quality["result"]["mean_luma"]
