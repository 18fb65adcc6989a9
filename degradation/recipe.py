"""Synthetic "handheld night photo" degradation: dim light, camera shake, sensor noise, JPEG.

Darkroom trains its own night model on clean photos degraded by this module and evaluates it on
Kodak images degraded the same way, so two properties matter more than realism in every detail:

* **Reproducibility.** Every random draw comes from the ``numpy.random.Generator`` passed in, in a
  fixed order, and everything drawn is recorded in a frozen :class:`DegradationParams` (the blur
  kernel included), so an evaluation can report exactly what it measured and ``degrade`` with the
  same params and rng state returns the same pixels.
* **Physical order.** The steps happen where a camera makes them happen, in linear light: the
  scene is blurred by the shake during the exposure (blur before noise, so noise stays white),
  photons are counted (shot noise scales with the signal, so relative noise rises as exposure
  falls), the readout adds Gaussian noise, the camera applies its tone curve and sRGB encoding,
  and only then JPEG quantises the already dark 8-bit image, which is what destroys shadows in
  real phone shots.

The recipe (see :func:`sample_params`): exposure log-uniform in [1/40, 1/3] (slightly darker than
1/20 so that real low-light sets such as LoL, whose frames are 15-50x darker than their
references in linear light, are inside the training range), white-balance jitter of +-8 %,
camera gamma 0.85-1.15 with a small flare (veiling glare) offset, a Boracchi & Foi style motion
kernel of 5-31 px (20 % of samples sharp), shot noise from a full well of 300-6000 photons, read
noise of 0.05-0.6 % of full scale, and JPEG quality 60-95 through Pillow.

Only numpy and Pillow are needed, so the pipeline runs in DataLoader workers and on machines
without torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from degradation.camera import jpeg_roundtrip, log_uniform
from imaging.colour import linear_to_srgb, srgb_to_linear

__all__ = [
    "DegradationParams",
    "ShakeKernel",
    "degrade",
    "degrade_eval_set",
    "linear_to_srgb",
    "motion_kernel",
    "sample_params",
    "srgb_to_linear",
]

EXPOSURE_RANGE = (1.0 / 40.0, 1.0 / 3.0)
KERNEL_SIZE_RANGE = (5, 31)
SHARP_PROBABILITY = 0.2
FULL_WELL_RANGE = (300.0, 6000.0)
READ_NOISE_RANGE = (5e-4, 6e-3)
JPEG_QUALITY_RANGE = (60, 95)
GAMMA_RANGE = (0.85, 1.15)
FLARE_RANGE = (0.0, 4e-3)
WHITE_BALANCE_JITTER = 0.08


class ShakeKernel:
    """The camera-shake kernel a recipe's params record, as ``kernel_size`` and ``kernel``
    (nested tuples, hashable and JSON friendly); shared by both recipes' params."""

    kernel_size: int
    kernel: tuple[tuple[float, ...], ...]

    @property
    def kernel_array(self) -> np.ndarray:
        """The blur kernel as a float64 array (sums to 1)."""
        return np.asarray(self.kernel, dtype=np.float64)

    @property
    def sharp(self) -> bool:
        """Whether no camera shake was applied."""
        return self.kernel_size <= 1


@dataclass(frozen=True)
class DegradationParams(ShakeKernel):
    """Everything one degradation drew, so an evaluation can report and replay it.

    ``kernel`` is the normalised blur kernel as nested tuples (hashable and JSON friendly); a 1x1
    kernel ``((1.0,),)`` means the sample is sharp. ``full_well`` is the photon count that fills
    the sensor (fewer photons, more shot noise) and ``read_noise`` the readout standard deviation
    in full-scale units.
    """

    exposure: float
    white_balance: tuple[float, float, float]
    gamma: float
    flare: float
    kernel_size: int
    kernel: tuple[tuple[float, ...], ...] = field(repr=False)
    full_well: float
    read_noise: float
    jpeg_quality: int

    def summary(self) -> dict[str, Any]:
        """The scalar parameters as a JSON-ready dict (the kernel itself is left out)."""
        out = asdict(self)
        out.pop("kernel")
        out["white_balance"] = list(self.white_balance)
        return out


def motion_kernel(rng: np.random.Generator, size: int) -> np.ndarray:
    """Rasterise a random camera-shake trajectory into a normalised ``size x size`` kernel.

    The trajectory follows Boracchi & Foi ("Modeling the performance of image restoration from
    motion blur", 2012): a 2-D random walk whose velocity has inertia, a Gaussian perturbation, a
    pull back towards the start (a hand returns towards where it aimed) and rare impulsive jerks.
    It is scaled to span most of the kernel, so ``size`` controls the blur extent, and splatted
    bilinearly so sub-pixel motion gives smooth kernels. Result: float64, non-negative, sum 1.
    """
    if size < 1:
        raise ValueError(f"kernel size must be >= 1, got {size}")
    if size == 1:
        return np.ones((1, 1), dtype=np.float64)
    positions = _shake_trajectory(rng)
    # Centre the trajectory and scale its longer extent to a random fraction of the kernel.
    xs, ys = positions.real, positions.imag
    xs = xs - (xs.max() + xs.min()) / 2.0
    ys = ys - (ys.max() + ys.min()) / 2.0
    extent = max(xs.max() - xs.min(), ys.max() - ys.min(), 1e-9)
    target = (size - 1) * rng.uniform(0.6, 1.0)
    scale = target / extent
    c = (size - 1) / 2.0
    px = np.clip(xs * scale + c, 0.0, size - 1.0)
    py = np.clip(ys * scale + c, 0.0, size - 1.0)
    return _splat(px, py, size)


def _shake_trajectory(rng: np.random.Generator) -> np.ndarray:
    """Positions (complex, x + iy) of one random camera-shake path; see :func:`motion_kernel`."""
    # Constants and update rule as in Boracchi & Foi's createTrajectory (2000 steps of a 60 px
    # path there); 1000 steps with the Gaussian term scaled by sqrt(2) keep the same wander.
    steps = 1000
    max_length = 60.0
    step = max_length / (steps - 1)
    anxiety = 0.005 * rng.uniform()
    centripetal = 0.7 * rng.uniform()
    gaussian_term = 10.0 * math.sqrt(2.0) * rng.uniform()
    freq_big_shakes = 0.2 * rng.uniform()
    v0 = complex(np.exp(1j * rng.uniform(0.0, 2 * math.pi)))
    velocity = v0 * anxiety if anxiety > 0 else v0 * step
    gauss = rng.standard_normal(steps) + 1j * rng.standard_normal(steps)
    shake_draw = rng.uniform(0.0, 1.0, steps)
    shake_angle = rng.uniform(-0.5, 0.5, steps)
    positions = np.zeros(steps, dtype=np.complex128)
    x = 0j
    for t in range(steps - 1):
        jerk = 0j
        if shake_draw[t] < freq_big_shakes * anxiety:
            jerk = 2.0 * velocity * complex(np.exp(1j * (math.pi + shake_angle[t])))
        dv = jerk + anxiety * (gaussian_term * complex(gauss[t]) - centripetal * x) * step
        velocity = velocity + dv
        speed = abs(velocity)
        velocity = velocity / speed * step if speed > 0 else v0 * step
        x = x + velocity
        positions[t + 1] = x
    return positions


def _splat(px: np.ndarray, py: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splat of points (in ``[0, size - 1]``) into a ``size x size`` kernel, sum 1."""
    kernel = np.zeros((size, size), dtype=np.float64)
    x0 = np.floor(px).astype(int)
    y0 = np.floor(py).astype(int)
    fx = px - x0
    fy = py - y0
    x1 = np.minimum(x0 + 1, size - 1)
    y1 = np.minimum(y0 + 1, size - 1)
    np.add.at(kernel, (y0, x0), (1 - fx) * (1 - fy))
    np.add.at(kernel, (y0, x1), fx * (1 - fy))
    np.add.at(kernel, (y1, x0), (1 - fx) * fy)
    np.add.at(kernel, (y1, x1), fx * fy)
    return kernel / kernel.sum()


def sample_params(rng: np.random.Generator) -> DegradationParams:
    """Draw one degradation recipe (see the module docstring for the ranges and why)."""
    exposure = log_uniform(rng, *EXPOSURE_RANGE)
    white_balance = tuple(
        float(v) for v in 1.0 + rng.uniform(-WHITE_BALANCE_JITTER, WHITE_BALANCE_JITTER, 3)
    )
    gamma = float(rng.uniform(*GAMMA_RANGE))
    flare = float(rng.uniform(*FLARE_RANGE))
    if rng.uniform() < SHARP_PROBABILITY:
        size = 1
    else:
        lo, hi = KERNEL_SIZE_RANGE
        size = int(rng.integers(lo // 2, hi // 2 + 1)) * 2 + 1  # odd sizes keep the centre
    kernel = motion_kernel(rng, size)
    full_well = log_uniform(rng, *FULL_WELL_RANGE)
    read_noise = log_uniform(rng, *READ_NOISE_RANGE)
    jpeg_quality = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    return DegradationParams(
        exposure=exposure,
        white_balance=(white_balance[0], white_balance[1], white_balance[2]),
        gamma=gamma,
        flare=flare,
        kernel_size=size,
        kernel=tuple(tuple(float(v) for v in row) for row in kernel),
        full_well=full_well,
        read_noise=read_noise,
        jpeg_quality=jpeg_quality,
    )


def _blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with ``kernel`` by FFT, reflect-padded so borders stay plausible.

    FFT keeps the cost independent of the kernel size (31 px kernels would cost ~1000 MACs a
    pixel directly), which is what makes on-the-fly degradation affordable in training.
    """
    k = kernel.shape[0]
    if k == 1:
        return image
    pad = k // 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = padded.shape[:2]
    fh, fw = h + k - 1, w + k - 1
    spec_k = np.fft.rfft2(kernel, s=(fh, fw))
    spec_i = np.fft.rfft2(padded, s=(fh, fw), axes=(0, 1))
    full = np.fft.irfft2(spec_i * spec_k[:, :, None], s=(fh, fw), axes=(0, 1))
    # "full" convolution: output pixel (y, x) of the padded image sits at (y + pad, x + pad).
    return full[2 * pad : 2 * pad + image.shape[0], 2 * pad : 2 * pad + image.shape[1]]


def degrade(
    clean_srgb: np.ndarray,
    rng: np.random.Generator,
    params: DegradationParams | None = None,
) -> tuple[np.ndarray, DegradationParams]:
    """Turn a clean sRGB photo into a dim, shaken, noisy JPEG; return it and what was drawn.

    ``clean_srgb`` is H x W x 3 in [0, 1] (any float dtype; uint8 is accepted and scaled). When
    ``params`` is None they are drawn from ``rng`` first; the noise is always drawn from ``rng``
    afterwards, so the same seed gives the same output. The result is float32 H x W x 3 in [0, 1].
    """
    img = np.asarray(clean_srgb)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {img.shape}")
    if params is None:
        params = sample_params(rng)
    linear = srgb_to_linear(img.astype(np.float64))
    # The scene as it reaches the sensor: shaken during the exposure, then scaled by the light.
    linear = _blur(linear, params.kernel_array)
    signal = linear * params.exposure * np.asarray(params.white_balance)[None, None, :]
    signal = np.clip(signal + params.flare, 0.0, 1.0)
    # Poisson-Gaussian sensor: photon counting, then read noise, both in full-scale units.
    photons = rng.poisson(signal * params.full_well)
    raw = photons / params.full_well + rng.standard_normal(signal.shape) * params.read_noise
    raw = np.clip(raw, 0.0, 1.0)
    # Camera tone curve: a gamma tweak on top of the sRGB encoding.
    srgb = linear_to_srgb(np.power(raw, params.gamma))
    out = jpeg_roundtrip(srgb, params.jpeg_quality)
    return out.astype(np.float32), params


def degrade_eval_set(
    images: Iterable[np.ndarray] | Sequence[np.ndarray], seed: int
) -> list[tuple[np.ndarray, DegradationParams]]:
    """Degrade an evaluation set deterministically: image ``i`` uses ``default_rng([seed, i])``.

    Seeding per image (rather than one stream for the set) keeps each image's degradation stable
    when images are added, removed or reordered around it.
    """
    return [degrade(img, np.random.default_rng([seed, i]))[0:2] for i, img in enumerate(images)]
