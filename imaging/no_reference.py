"""No-reference measures of a restored photo: what can be said without a clean reference.

Real dim photos (the ``real-dim`` evaluation set) have no ground truth, so PSNR and SSIM cannot
score them. These five figures each watch one way a night restoration goes wrong: dark areas
left dark (``shadows``), the whole photo too dark or washed out (``mean_luma``), highlights
blown (``clipped_plus``), grain amplified with the light (``noise``), colour pushed garish
(``chroma_ratio``). Each has a target (:data:`TARGETS`) a good restoration should meet.

Every function takes sRGB floats in [0, 1], H x W x 3, as stored (not linearised). Pure numpy,
Pillow and scikit-image, so the measures can be tested on synthetic images in milliseconds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.color import rgb2lab
from skimage.restoration import estimate_sigma

from imaging.colour import LUMA_WEIGHTS

CLIP_LEVEL = 0.99
"""A pixel counts as clipped when any channel reaches this."""

NOISE_LONG_SIDE = 1024
"""Noise is estimated on the photo downsized to at most this many pixels on its long side, so
photos of different resolutions are judged at a comparable scale."""

_CHROMA_FLOOR = 1e-3
"""Added to both sides of the chroma ratio (CIELAB units) so a grey input and a grey output
give 1 instead of 0 / 0."""

MEASURES = ("shadows", "mean_luma", "clipped_plus", "noise", "chroma_ratio")


@dataclass(frozen=True)
class Target:
    """A bound a measure should meet: ``low`` <= value <= ``high`` (either may be open)."""

    measure: str
    label: str
    low: float | None = None
    high: float | None = None

    def excess(self, value: float) -> float:
        """How far ``value`` lies past the bound: positive misses it, the larger the worse;
        zero or negative meets it. Ranks the worst photos on one scale for every measure."""
        over = [] if self.high is None else [value - self.high]
        under = [] if self.low is None else [self.low - value]
        return max(over + under)

    def misses(self, value: float) -> bool:
        return self.excess(value) > 0

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low:.2f}-{self.high:.2f}"
        return f">= {self.low:.2f}" if self.low is not None else f"<= {self.high:.2f}"


TARGETS = {
    target.measure: target
    for target in (
        Target("shadows", "shadows", low=0.20),
        Target("mean_luma", "mean luma", low=0.30, high=0.50),
        Target("clipped_plus", "clipped+", high=0.01),
        Target("noise", "noise", high=1.0),
        Target("chroma_ratio", "chroma", high=1.3),
    )
}
"""The targets of the issue that asked for the ``real-dim`` set, one per measure."""


def luma(image: np.ndarray) -> np.ndarray:
    return np.asarray(image[..., :3], dtype=np.float32) @ LUMA_WEIGHTS


def shadows(source: np.ndarray, output: np.ndarray) -> float:
    """Mean output luma over the darkest half of the *input* (luma at or below its median).

    The input decides which pixels are shadows, so a method cannot score by brightening only
    what was already bright. Ties at the median count as dark, so the set is never empty.
    """
    source_luma = luma(source)
    dark = source_luma <= np.median(source_luma)
    return float(luma(output)[dark].mean())


def mean_luma(image: np.ndarray) -> float:
    return float(luma(image).mean())


def clipped_share(image: np.ndarray) -> float:
    return float(np.any(image >= CLIP_LEVEL, axis=-1).mean())


def clipped_plus(source: np.ndarray, output: np.ndarray) -> float:
    """Share of output pixels with a channel at the clip level, minus the input's: the
    highlights a restoration blew, not the light sources that were already white."""
    return clipped_share(output) - clipped_share(source)


def downsize(image: np.ndarray, long_side: int = NOISE_LONG_SIDE) -> np.ndarray:
    """``image`` with its long side at most ``long_side``: Pillow's Lanczos filter (antialiased,
    deterministic) on each channel as 32-bit floats, so no 8-bit rounding adds noise."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale >= 1:
        return image
    return resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` at ``size`` (width, height), Lanczos on float channels."""
    channels = []
    for c in range(image.shape[-1]):
        plane = Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32))
        channels.append(np.asarray(plane.resize(size, Image.Resampling.LANCZOS)))
    return np.stack(channels, axis=-1)


def noise(image: np.ndarray) -> float:
    """scikit-image's wavelet (MAD) noise estimate, averaged over channels, in 8-bit levels,
    on the photo downsized by :func:`downsize`. Fine texture and JPEG blocks count too: a
    figure to compare methods on one photo, not an absolute noise level. No detail at all (a
    black output) is no noise: 0."""
    with warnings.catch_warnings():
        # A channel without any detail (all black) has no coefficient to take a median of.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # a strip a pixel or two wide
        sigmas = np.asarray(estimate_sigma(downsize(image), channel_axis=-1), dtype=np.float64)
    return float(np.mean(np.nan_to_num(sigmas, nan=0.0))) * 255.0


def chroma(image: np.ndarray) -> float:
    """Mean of |a*| + |b*| in CIELAB: how far from grey the colours are on average."""
    lab = rgb2lab(np.clip(image, 0.0, 1.0))
    return float(np.mean(np.abs(lab[..., 1]) + np.abs(lab[..., 2])))


def chroma_ratio(source: np.ndarray, output: np.ndarray) -> float:
    """Output chroma over input chroma: above 1 the colours got stronger (night photos gain
    chroma noise and casts when brightened), below 1 they washed out."""
    return (chroma(output) + _CHROMA_FLOOR) / (chroma(source) + _CHROMA_FLOOR)


def match_size(output: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``output`` at ``source``'s size: an output of another size (a super-resolution model)
    is resized, since ``shadows`` pairs pixels. Every method is judged at the input's size."""
    if output.shape[:2] == source.shape[:2]:
        return output
    return resize(output, (source.shape[1], source.shape[0]))


def measure(source: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """All of :data:`MEASURES` for one input and one restoration of it (see
    :func:`match_size` for outputs of another size)."""
    output = np.clip(match_size(output, source), 0.0, 1.0)
    return {
        "shadows": shadows(source, output),
        "mean_luma": mean_luma(output),
        "clipped_plus": clipped_plus(source, output),
        "noise": noise(output),
        "chroma_ratio": chroma_ratio(source, output),
    }
