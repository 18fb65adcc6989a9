"""Camera shake as hands make it at night, for training darkroom-night v3 (issue #27).

:func:`degradation.recipe.motion_kernel` draws one kernel of a given size for the whole frame:
right for the frozen evaluation recipe, but a night exposure held by hand is more than that.
Here a shake is drawn the way it happens, then rendered at the frame's own scale:

* **Exposure time, not a kernel size.** Exposures run 1/15 to 1/2 s. The hand's angular motion
  over that time is a slow sway (a random walk in angular velocity), a physiological tremor of
  8 to 12 Hz and, now and then, a jerk: long, curved, uneven paths whose speed varies (the slow
  parts expose more, so kernels are brighter where the path lingers).
* **Angles, not pixels.** The path is an angle; a pixel displacement is that angle times the
  focal length in pixels (:func:`focal_px`), so the same shake spans tens of pixels on a 12-MP
  frame and a few on a 481-px crop that stands for a whole photo, or tens again on a crop of
  a 12-MP frame: callers say which by the frame's long side.
* **Roll.** Rotation about the optical axis moves the corners more than the centre, so blur grows
  towards the edges: :func:`render` blurs with the kernel of each region and blends them.
* **A little defocus**: a disc, convolved with the path.

Applied to linear scene radiance before it is clipped or noised (the night scenes' order), a
lamp brighter than full scale draws the path as a bright streak. numpy only, every draw from the
``Generator`` passed in, so it runs in data-loader processes and repeats with a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXPOSURE_S = (1.0 / 15.0, 0.5)
"""Handheld night exposures: from a phone's shortest night-mode frame to a long one."""
SWAY_DEG_PER_S = (0.3, 2.0)
"""Root-mean-square angular speed of the slow sway (steady to unsteady hands)."""
TREMOR_HZ = (8.0, 12.0)
TREMOR_DEG = (0.002, 0.02)
"""Amplitude of the physiological tremor, in degrees."""
JERKS_PER_S = 1.5
"""Mean rate of sudden jerks (a press of the shutter, a breath)."""
ROLL_SHARE = (0.0, 0.6)
"""Roll speed as a share of the pitch/yaw sway: hands rotate the phone less than they tilt it."""
DEFOCUS_PX = (0.0, 2.5)
"""Radius of the defocus disc on a 4000-px frame (scaled like the path)."""
REFERENCE_SIDE = 4000
"""Long side (px) of the 12-MP frame the defocus range is stated for."""
SAMPLES_PER_S = 2000


@dataclass(frozen=True)
class Shake:
    """One exposure's camera motion, in angles: yaw and pitch (x, y) and roll, sampled evenly in
    time, so the time the path spends near a point is the light it leaves there."""

    yaw_pitch: np.ndarray
    """(T, 2) radians."""
    roll: np.ndarray
    """(T,) radians."""
    exposure_s: float
    defocus: float
    """Defocus radius on a :data:`REFERENCE_SIDE`-px frame."""


def focal_px(long_side: int, equivalent_mm: float = 26.0) -> float:
    """The focal length in pixels of a frame whose long side is ``long_side`` px, for a lens of
    ``equivalent_mm`` (35-mm equivalent: 26 mm is a phone's main camera)."""
    return long_side * equivalent_mm / 36.0


def hand_shake(rng: np.random.Generator, exposure_s: float | None = None) -> Shake:
    """A random handheld exposure (its length drawn log-uniformly in :data:`EXPOSURE_S` unless
    given) and the hand's motion during it."""
    if exposure_s is None:
        exposure_s = math.exp(rng.uniform(*np.log(EXPOSURE_S)))
    steps = max(8, int(exposure_s * SAMPLES_PER_S))
    dt = exposure_s / steps
    sway = math.radians(rng.uniform(*SWAY_DEG_PER_S))
    # Slow sway: angular velocity as a random walk with inertia (an Ornstein-Uhlenbeck process
    # whose correlation time is a few tenths of a second, as a hand's).
    tau = rng.uniform(0.1, 0.4)
    velocity = np.empty((steps, 3))
    velocity[0] = rng.standard_normal(3) * sway
    pull = math.exp(-dt / tau)
    kick = sway * math.sqrt(1.0 - pull * pull)
    for i in range(1, steps):
        velocity[i] = velocity[i - 1] * pull + rng.standard_normal(3) * kick
    velocity[:, 2] *= rng.uniform(*ROLL_SHARE)
    # Jerks: a short burst of speed in a random direction.
    for _ in range(rng.poisson(JERKS_PER_S * exposure_s)):
        start = int(rng.integers(0, steps))
        length = max(1, int(rng.uniform(0.01, 0.04) / dt))
        direction = rng.standard_normal(3) * np.array([1.0, 1.0, 0.3])
        velocity[start : start + length] += direction * sway * rng.uniform(2.0, 6.0)
    angles = np.cumsum(velocity * dt, axis=0)
    # Tremor: a few-Hz wobble on top, its phase and axis drawn.
    t = np.arange(steps) * dt
    amplitude = math.radians(rng.uniform(*TREMOR_DEG))
    for axis in range(2):
        frequency = rng.uniform(*TREMOR_HZ)
        angles[:, axis] += amplitude * np.sin(2 * math.pi * frequency * t + rng.uniform(0, 6.3))
    angles -= angles.mean(axis=0)
    return Shake(angles[:, :2], angles[:, 2], exposure_s, rng.uniform(*DEFOCUS_PX))


def kernel_at(shake: Shake, long_side: int, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The blur kernel at ``offset`` (x, y pixels from the frame's centre) of a frame whose long
    side is ``long_side`` px: the path of that point over the exposure (yaw and pitch move every
    point alike, roll moves each by its distance from the centre), splatted bilinearly, with the
    defocus disc. Odd-sized, non-negative, sums to 1."""
    f = focal_px(long_side)
    x0, y0 = offset
    cos, sin = np.cos(shake.roll), np.sin(shake.roll)
    xs = f * shake.yaw_pitch[:, 0] + (cos * x0 - sin * y0 - x0)
    ys = f * shake.yaw_pitch[:, 1] + (sin * x0 + cos * y0 - y0)
    radius = shake.defocus * long_side / REFERENCE_SIDE
    reach = max(np.abs(xs).max(), np.abs(ys).max()) + radius
    half = int(math.ceil(reach)) + 1
    size = 2 * half + 1
    kernel = np.zeros((size, size))
    px, py = xs + half, ys + half
    left, top = np.floor(px).astype(int), np.floor(py).astype(int)
    fx, fy = px - left, py - top
    for dx, dy, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(kernel, (top + dy, left + dx), weight)
    if radius > 0.5:
        # The FFT leaves rounding noise of either sign around zero: a kernel has none.
        kernel = np.clip(_convolve(kernel, _disc(radius), same=True), 0.0, None)
    return kernel / kernel.sum()


def render(
    image: np.ndarray, shake: Shake, long_side: int | None = None, grid: int = 3
) -> np.ndarray:
    """``image`` (H x W x C, linear light, any range) blurred by ``shake`` as a frame whose long
    side is ``long_side`` px (the image's own by default): the kernel of each of ``grid`` x
    ``grid`` regions applied to the whole frame, the results blended with weights that fall off
    linearly between region centres, so blur varies smoothly from the centre to the corners."""
    height, width = image.shape[:2]
    long_side = long_side or max(height, width)
    scale = long_side / max(height, width)
    centres_y = (np.arange(grid) + 0.5) * height / grid
    centres_x = (np.arange(grid) + 0.5) * width / grid
    wy = _tent(np.arange(height) + 0.5, centres_y)
    wx = _tent(np.arange(width) + 0.5, centres_x)
    out = np.zeros(image.shape, dtype=np.float64)
    for i, cy in enumerate(centres_y):
        for j, cx in enumerate(centres_x):
            weight = wy[i][:, None] * wx[j][None, :]
            if not weight.any():
                continue
            offset = ((cx - width / 2) * scale, (cy - height / 2) * scale)
            kernel = kernel_at(shake, long_side, offset)
            if scale != 1.0:
                kernel = _resample(kernel, 1.0 / scale)
            blurred = np.stack(
                [_convolve(image[..., c], kernel, same=True) for c in range(image.shape[2])],
                axis=-1,
            )
            out += blurred * weight[..., None]
    return out.astype(image.dtype, copy=False)


def _tent(positions: np.ndarray, centres: np.ndarray) -> list[np.ndarray]:
    """Per centre, weights over ``positions`` that fall linearly to 0 at the next centre and sum
    to 1 everywhere (flat beyond the outermost centres)."""
    if len(centres) == 1:
        return [np.ones_like(positions)]
    clipped = np.clip(positions, centres[0], centres[-1])
    spacing = centres[1] - centres[0]
    return [np.clip(1.0 - np.abs(clipped - c) / spacing, 0.0, 1.0) for c in centres]


def _disc(radius: float) -> np.ndarray:
    half = int(math.ceil(radius))
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    # Anti-aliased edge: a pixel is covered by how far inside the circle its centre lies.
    disc = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0)
    return disc / disc.sum()


def _resample(kernel: np.ndarray, factor: float) -> np.ndarray:
    """A kernel drawn at one scale, at ``factor`` times that scale (a crop standing for a larger
    frame): box-averaged down, renormalised, kept odd-sized and centred."""
    size = kernel.shape[0]
    new = max(1, int(math.ceil(size * factor)) | 1)
    edges = np.linspace(0, size, new + 1)
    rows = np.add.reduceat(kernel, np.minimum(edges[:-1].astype(int), size - 1), axis=0)
    both = np.add.reduceat(rows, np.minimum(edges[:-1].astype(int), size - 1), axis=1)
    return both / both.sum()


def _convolve(image: np.ndarray, kernel: np.ndarray, *, same: bool) -> np.ndarray:
    """2-D convolution through the FFT, reflect-padded so the borders do not darken."""
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(image, ((ph, ph), (pw, pw)), mode="reflect" if same else "constant")
    fh, fw = padded.shape[0] + kh - 1, padded.shape[1] + kw - 1
    spectrum = np.fft.rfft2(padded, s=(fh, fw)) * np.fft.rfft2(kernel, s=(fh, fw))
    full = np.fft.irfft2(spectrum, s=(fh, fw))
    return full[2 * ph : 2 * ph + image.shape[0], 2 * pw : 2 * pw + image.shape[1]]
