"""Hand shake for the v3 training scenes: paths drawn in angles and rendered at the frame's
scale, blur that grows towards the corners, lamps that become streaks."""

from __future__ import annotations

import numpy as np
import pytest

from degradation.shake import EXPOSURE_S, Shake, focal_px, hand_shake, kernel_at, render


def extent(kernel: np.ndarray) -> float:
    """How far the kernel's light spreads: the root-mean-square distance from its centroid."""
    y, x = np.mgrid[: kernel.shape[0], : kernel.shape[1]]
    cy, cx = (kernel * y).sum(), (kernel * x).sum()
    return float(np.sqrt((kernel * ((y - cy) ** 2 + (x - cx) ** 2)).sum()))


def still(exposure_s: float = 0.1, roll: float = 0.0, defocus: float = 0.0) -> Shake:
    steps = 64
    return Shake(np.zeros((steps, 2)), np.linspace(0.0, roll, steps), exposure_s, defocus)


@pytest.mark.parametrize("seed", range(5))
def test_a_kernel_is_light_conserving_and_odd_sized(seed: int) -> None:
    kernel = kernel_at(hand_shake(np.random.default_rng(seed)), 4000)
    assert kernel.shape[0] % 2 == 1 and kernel.shape[0] == kernel.shape[1]
    assert kernel.min() >= 0 and kernel.sum() == pytest.approx(1.0)


def test_longer_exposures_shake_more() -> None:
    def spread(exposure_s: float) -> float:
        shakes = [hand_shake(np.random.default_rng(s), exposure_s) for s in range(20)]
        return float(np.median([extent(kernel_at(shake, 4000)) for shake in shakes]))

    assert spread(EXPOSURE_S[1]) > 3 * spread(EXPOSURE_S[0])


def test_the_same_shake_spans_tens_of_pixels_at_12_mp_and_a_few_on_a_small_frame() -> None:
    shakes = [hand_shake(np.random.default_rng(s), 0.25) for s in range(20)]
    big = np.median([extent(kernel_at(s, 4000)) for s in shakes])
    small = np.median([extent(kernel_at(s, 481)) for s in shakes])
    assert big > 5  # an RMS spread of several pixels: a path tens of pixels long
    assert big / small == pytest.approx(4000 / 481, rel=0.25)
    assert focal_px(4000) == pytest.approx(2889, rel=0.01)


def test_roll_blurs_the_corners_and_not_the_centre() -> None:
    shake = still(roll=0.008)  # half a degree: a corner 2,360 px out moves 19 px
    centre = kernel_at(shake, 4000)
    corner = kernel_at(shake, 4000, (1900.0, 1400.0))
    assert extent(centre) < 0.6 and extent(corner) > 3


def test_defocus_alone_is_a_round_disc() -> None:
    kernel = kernel_at(still(defocus=2.0), 4000)
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-12)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-12)
    assert extent(kernel) > 0.8


def test_no_shake_leaves_the_image_as_it_was() -> None:
    image = np.random.default_rng(0).random((40, 60, 3))
    np.testing.assert_allclose(render(image, still()), image, atol=1e-9)


def test_a_lamp_above_full_scale_draws_the_path_as_a_streak() -> None:
    steps = 200
    sweep = np.stack([np.linspace(-0.05, 0.05, steps), np.zeros(steps)], axis=1)
    shake = Shake(sweep, np.zeros(steps), 0.25, 0.0)  # a yaw of 0.1 rad: 11 px on 151 px
    scene = np.full((101, 151, 3), 0.01)
    scene[50, 75] = 200.0  # a bulb, 200x the sensor's full scale before clipping
    blurred = render(scene, shake, grid=1)
    rows, cols = np.nonzero(np.clip(blurred[..., 0], 0.0, 1.0) >= 1.0)  # what clips
    assert set(rows) <= {49, 50, 51} and cols.max() - cols.min() >= 8  # a line, not a dot
    assert blurred.sum() == pytest.approx(scene.sum(), rel=1e-6)  # light is only moved


def test_rendering_is_repeatable_from_a_seed() -> None:
    image = np.random.default_rng(1).random((30, 40, 3))
    first = render(image, hand_shake(np.random.default_rng(9)))
    again = render(image, hand_shake(np.random.default_rng(9)))
    np.testing.assert_array_equal(first, again)
