"""Each no-reference measure says what it claims, on synthetic images built to pass or fail it."""

from __future__ import annotations

import numpy as np
import pytest

from imaging import no_reference as nr


def flat(value: float | tuple[float, float, float], size: tuple[int, int] = (64, 64)) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.float32), (*size, 3)).copy()


def halves(left: float, right: float, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    """Left half at ``left``, right half at ``right`` (grey)."""
    image = flat(left, size)
    image[:, size[1] // 2 :] = right
    return image


def test_luma_uses_the_rec709_weights() -> None:
    assert nr.luma(flat((0.0, 1.0, 0.0)))[0, 0] == pytest.approx(0.7152)
    assert nr.mean_luma(flat((1.0, 0.0, 1.0))) == pytest.approx(0.2126 + 0.0722)


def test_shadows_reads_the_output_where_the_input_was_darkest() -> None:
    source = halves(0.05, 0.6)
    lifted = halves(0.3, 0.9)
    assert nr.shadows(source, lifted) == pytest.approx(0.3, abs=1e-6)
    # Brightening only what was already bright leaves the shadows where they were.
    highlights_only = halves(0.05, 1.0)
    assert nr.shadows(source, highlights_only) == pytest.approx(0.05, abs=1e-6)
    # The input picks the pixels, not the output: a swapped output scores its left half.
    assert nr.shadows(source, halves(0.7, 0.1)) == pytest.approx(0.7, abs=1e-6)


def test_shadows_is_defined_on_a_photo_mostly_black() -> None:
    source = flat(0.0)
    source[:4] = 0.5  # most pixels tie at the median, 0
    assert nr.shadows(source, flat(0.25)) == pytest.approx(0.25)


def test_clipped_plus_counts_only_the_highlights_the_method_blew() -> None:
    source = flat(0.4, (10, 10))
    source[0, :, 0] = 1.0  # a lamp already white: 10 % of the pixels, one channel is enough
    output = source.copy()
    output[1:3, :, 2] = 0.995  # 20 % more at or above 0.99
    output[3, :, :] = 0.989  # below the clip level: not counted
    assert nr.clipped_share(source) == pytest.approx(0.1)
    assert nr.clipped_plus(source, output) == pytest.approx(0.2)
    assert nr.clipped_plus(output, source) == pytest.approx(-0.2)


def test_noise_reads_gaussian_noise_in_8_bit_levels() -> None:
    rng = np.random.default_rng(0)
    clean = flat(0.4, (256, 256))
    noisy = clean + rng.normal(0, 3 / 255, clean.shape).astype(np.float32)
    assert nr.noise(clean) < 0.05
    assert nr.noise(flat(0.0)) == 0.0  # no detail at all: no noise, not "not a number"
    assert nr.noise(noisy) == pytest.approx(3.0, rel=0.1)


def test_noise_is_measured_on_the_photo_downsized_to_1024_pixels() -> None:
    rng = np.random.default_rng(1)
    big = (0.4 + rng.normal(0, 4 / 255, (1536, 2048, 3))).astype(np.float32)
    assert nr.downsize(big).shape == (768, 1024, 3)
    assert nr.downsize(big[:700, :900]).shape == (700, 900, 3)  # never enlarged
    # Halving the size averages the grain down: far below the full-size 4 levels.
    assert nr.noise(big) < 3.0
    assert nr.noise(big[:1024, :1024]) == pytest.approx(4.0, rel=0.1)


def test_downsize_keeps_float_precision_and_flat_values() -> None:
    image = flat(0.123456, (300, 2000))
    small = nr.downsize(image)
    assert small.dtype == np.float32 and small.shape == (154, 1024, 3)
    np.testing.assert_allclose(small, 0.123456, atol=1e-5)


def test_chroma_ratio_rises_with_stronger_colour_and_is_one_for_grey() -> None:
    source = flat((0.5, 0.4, 0.3))
    assert nr.chroma_ratio(flat(0.5), flat(0.5)) == pytest.approx(1.0)
    assert nr.chroma_ratio(source, source) == pytest.approx(1.0)
    assert nr.chroma_ratio(source, flat((0.6, 0.4, 0.15))) > 1.3
    assert nr.chroma_ratio(source, flat(0.45)) < 0.01


def test_targets_meet_and_miss_at_their_bounds() -> None:
    shadows, luma = nr.TARGETS["shadows"], nr.TARGETS["mean_luma"]
    assert not shadows.misses(0.20) and shadows.misses(0.19)
    assert luma.misses(0.29) and luma.misses(0.51) and not luma.misses(0.4)
    assert luma.excess(0.55) == pytest.approx(0.05) and luma.excess(0.25) == pytest.approx(0.05)
    assert nr.TARGETS["clipped_plus"].misses(0.011) and not nr.TARGETS["noise"].misses(1.0)
    assert nr.TARGETS["chroma_ratio"].misses(1.31)
    assert set(nr.TARGETS) == set(nr.MEASURES)


def test_measure_gives_every_measure_and_judges_other_sizes_at_the_inputs() -> None:
    source = halves(0.05, 0.3, (32, 48))
    twice = np.repeat(np.repeat(halves(0.3, 0.6, (32, 48)), 2, axis=0), 2, axis=1)
    figures = nr.measure(source, twice)
    assert set(figures) == set(nr.MEASURES)
    assert figures["shadows"] == pytest.approx(0.3, abs=0.02)
    assert figures["mean_luma"] == pytest.approx(0.45, abs=0.02)
    assert nr.match_size(twice, source).shape == source.shape
