"""What a worker measures of every job, before and after: the quality signals the review rules
read (``shared.review.rules``), and the small previews a reviewer looks at.

Both come from one 512-px copy of the input and one of the result, so a 12-megapixel photo pays
for a few hundred thousand pixels, not twelve million (``benchmarks/quality_cost.py`` measures
the share of a job's time). Sharpness and noise are therefore figures at that scale: they
compare photos with each other and a result with its input, not absolute levels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.color import rgb2lab

from imaging import no_reference
from imaging.colour import srgb_to_linear

PREVIEW_SIDE = 512
"""Long side of the copies measured and of the previews stored (JPEG)."""
PREVIEW_QUALITY = 82

BLACK_LEVEL = 0.02
"""Luma at or below this counts as near-black (about 5 of 255)."""

_LAB_RANGE = (10.0, 95.0)
"""L* of the pixels whose average a* and b* say which way a cast leans (``cast_a``: green to
red, ``cast_b``: blue to yellow): not near-black (where a* and b* are noise) and not blown."""

_SHARPNESS_SCALE = 3.0 / PREVIEW_SIDE
"""The scale sharpness is judged at, as a share of the frame's long side (3 px of a 512-px
copy): coarse enough that a dim photo's grain, which is finer, is not taken for detail, fine
enough that a shaken or out-of-focus photo has lost it."""


@dataclass(frozen=True)
class Measured:
    """A job's quality (stored as JSON with the job) and its two previews (JPEG bytes)."""

    quality: dict[str, Any]
    before_preview: bytes
    after_preview: bytes


def shrink(pixels: np.ndarray, long_side: int = PREVIEW_SIDE) -> np.ndarray:
    """``pixels`` (H x W x 3 float) averaged over whole blocks so the long side is at most
    ``long_side``: a box filter, cheap on a 12-MP photo and free of aliasing; the few rows
    and columns past the last whole block are dropped. Clipped to [0, 1], float32."""
    height, width = pixels.shape[:2]
    factor = math.ceil(max(height, width) / long_side)
    image = np.asarray(pixels[..., :3], dtype=np.float32)
    if factor > 1 and min(height, width) >= factor:
        rows, cols = height // factor, width // factor
        # Sum every factor-th row (whole rows: fast strided reads), then blocks of columns.
        end, span = rows * factor, cols * factor
        total = image[0:end:factor, :span].copy()
        for offset in range(1, factor):
            total += image[offset:end:factor, :span]
        image = total.reshape(rows, cols, factor, 3).sum(axis=2) / np.float32(factor * factor)
    elif factor > 1:  # a strip thinner than one block: resample instead
        size = (max(1, round(width / factor)), max(1, round(height / factor)))
        image = no_reference.resize(image, size)
    return np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0)


def signals(image: np.ndarray) -> dict[str, float]:
    """The figures the review rules read, of one shrunk copy (see :func:`shrink`)."""
    luma = no_reference.luma(image)
    mean_luma = float(luma.mean())
    noise = no_reference.noise(image)
    sharpness = _sharpness(luma)
    lab = rgb2lab(image)
    lit = (lab[..., 0] > _LAB_RANGE[0]) & (lab[..., 0] < _LAB_RANGE[1])
    chroma = lab[lit][:, 1:] if lit.any() else lab.reshape(-1, 3)[:, 1:]
    cast_a, cast_b = (float(v) for v in chroma.mean(axis=0))
    # Grey-edge: in a photo without a cast, edges are about as strong in every channel (a
    # green field is green, but its edges are not), so their imbalance measures the cast and
    # not the scene's colours, as the average colour would.
    linear = srgb_to_linear(image)
    edges = [
        float(ndimage.gaussian_gradient_magnitude(linear[..., c], 1.0).mean()) for c in range(3)
    ]
    colour_cast = max(edges) / max(min(edges), 1e-6) if max(edges) > 1e-6 else 1.0
    figures = {
        "mean_luma": mean_luma,
        "black_share": float((luma <= BLACK_LEVEL).mean()),
        "clipped_share": no_reference.clipped_share(image),
        "noise": noise,
        "relative_noise": noise / (255.0 * max(mean_luma, BLACK_LEVEL)),
        "sharpness": sharpness,
        "colour_cast": colour_cast,
        "cast_a": cast_a,
        "cast_b": cast_b,
    }
    return {name: round(value, 6) for name, value in figures.items()}


def _sharpness(luma: np.ndarray) -> float:
    """How sharply the luma's edges turn: the spread of its Laplacian of Gaussian over its mean
    gradient, both at :data:`_SHARPNESS_SCALE`. A blurred edge still rises, but slowly, so its
    curvature is small for its slope; dividing by the slope makes the figure the same for a
    low-contrast scene (a misty sea) as for a busy one, where the Laplacian alone calls smooth
    scenes blurred. About 0.38 for an ordinary photo, under 0.25 for a strongly blurred one."""
    sigma = max(0.5, _SHARPNESS_SCALE * max(luma.shape[:2]))
    curvature = float(ndimage.gaussian_laplace(luma, sigma).std())
    slope = float(ndimage.gaussian_gradient_magnitude(luma, sigma).mean())
    return curvature / slope if slope > 1e-6 else 0.0


def preview_jpeg(image: np.ndarray) -> bytes:
    """A shrunk copy as a small JPEG, for a page of fifty to load fast."""
    pixels = (image * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=PREVIEW_QUALITY, optimize=True)
    return buffer.getvalue()


def measure(source: np.ndarray, result: np.ndarray) -> Measured:
    """Signals and previews of one job's input and result (a result of another size, from a
    super-resolution model, is measured at its own size: every figure is scale-free or taken
    at the same 512-px scale)."""
    before, after = shrink(source), shrink(result)
    quality = {
        "input": signals(before),
        "result": signals(after),
        "measured_at": [int(after.shape[1]), int(after.shape[0])],
    }
    return Measured(quality, preview_jpeg(before), preview_jpeg(after))
