"""Array-level camera steps: shake blur, Bayer mosaic, demosaic (:mod:`degradation.night_scenes`),
the JPEG round trip and the log-uniform draw both the evaluation recipe and the night scenes use.

They hold no randomness and no parameters of their own, so they can be tested against plain
reference implementations; they are written for whole training photos on one core (a few
milliseconds each at 481 x 321), which is why they work on quarter planes and fast FFT sizes.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

__all__ = ["bayer_gains", "blur", "demosaic_bilinear", "jpeg_roundtrip", "log_uniform", "mosaic"]


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw whose logarithm is uniform: exposures, noise levels and light sizes span decades,
    and each decade should be as likely as the next."""
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def jpeg_roundtrip(srgb: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through Pillow's JPEG encoder with 4:2:0 chroma, as phones save photos."""
    u8 = np.clip(np.rint(srgb * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The evaluation recipe's shake blur, H x W x 3, at FFT sizes that are fast to transform.

    The same convolution as :func:`degradation.recipe._blur` (reflect padding, centred kernel)
    to float32 precision, but circular on planes reflect-padded up to a length with small prime
    factors only, where ``_blur`` pads with zeros to ``h + 2k - 2``: for a 481 px side that is
    often a prime length, whose FFT costs five times more.
    """
    k = kernel.shape[0]
    if k == 1:
        return image
    pad = k // 2
    h, w = image.shape[:2]
    fh, fw = smooth_size(h + 2 * pad), smooth_size(w + 2 * pad)
    planes = np.pad(
        image.transpose(2, 0, 1), ((0, 0), (pad, fh - h - pad), (pad, fw - w - pad)), "reflect"
    )
    spread = np.zeros((fh, fw), dtype=np.float32)
    spread[:k, :k] = kernel
    spread = np.roll(spread, (-pad, -pad), axis=(0, 1))  # centre tap at the origin
    full = np.fft.irfft2(np.fft.rfft2(planes) * np.fft.rfft2(spread), s=(fh, fw))
    return full[:, pad : pad + h, pad : pad + w].transpose(1, 2, 0).astype(np.float32)


def smooth_size(n: int) -> int:
    """The smallest integer >= n whose prime factors are all at most 11 (pocketfft's radices)."""
    while True:
        m = n
        for p in (2, 3, 5, 7, 11):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def mosaic(rgb: np.ndarray) -> np.ndarray:
    """Sample an RGGB Bayer pattern: R at even rows and columns, B at odd ones, G elsewhere."""
    out = np.empty(rgb.shape[:2], dtype=np.float32)
    out[0::2, 0::2] = rgb[0::2, 0::2, 0]
    out[0::2, 1::2] = rgb[0::2, 1::2, 1]
    out[1::2, 0::2] = rgb[1::2, 0::2, 1]
    out[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return out


def bayer_gains(raw: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Multiply each photosite of an RGGB mosaic by its colour's gain, in place."""
    raw[0::2, 0::2] *= gains[0]
    raw[0::2, 1::2] *= gains[1]
    raw[1::2, 0::2] *= gains[1]
    raw[1::2, 1::2] *= gains[2]
    return raw


def demosaic_bilinear(raw: np.ndarray) -> np.ndarray:
    """Bilinear demosaicing of an RGGB mosaic, H x W -> float32 H x W x 3.

    Each missing value is the mean of its nearest same-colour neighbours (2 or 4), so a
    photosite's noise spreads into its neighbours' colours: the correlated, coloured grain of
    real raw conversions. Beyond the border the mosaic is mirrored (reflect padding keeps the
    Bayer phase), which on the quarter planes is an edge repeat, so any size works.
    """
    h, w = raw.shape
    m = np.pad(raw, ((0, h % 2), (0, w % 2)), mode="reflect")  # even sides, same phase
    r, g1, g2, b = m[0::2, 0::2], m[0::2, 1::2], m[1::2, 0::2], m[1::2, 1::2]
    out = np.empty((m.shape[0], m.shape[1], 3), dtype=np.float32)
    rp = np.pad(r, ((0, 1), (0, 1)), mode="edge")  # red needs its right and lower neighbours
    out[0::2, 0::2, 0] = r
    out[0::2, 1::2, 0] = 0.5 * (rp[:-1, :-1] + rp[:-1, 1:])
    out[1::2, 0::2, 0] = 0.5 * (rp[:-1, :-1] + rp[1:, :-1])
    out[1::2, 1::2, 0] = 0.25 * (rp[:-1, :-1] + rp[:-1, 1:] + rp[1:, :-1] + rp[1:, 1:])
    bp = np.pad(b, ((1, 0), (1, 0)), mode="edge")  # blue its left and upper ones
    out[1::2, 1::2, 2] = b
    out[1::2, 0::2, 2] = 0.5 * (bp[1:, :-1] + bp[1:, 1:])
    out[0::2, 1::2, 2] = 0.5 * (bp[:-1, 1:] + bp[1:, 1:])
    out[0::2, 0::2, 2] = 0.25 * (bp[:-1, :-1] + bp[:-1, 1:] + bp[1:, :-1] + bp[1:, 1:])
    out[0::2, 1::2, 1] = g1
    out[1::2, 0::2, 1] = g2
    # Green at a red site: the two greens of its row (g1) and of its column (g2), and so at blue.
    g1l, g2u = np.pad(g1, ((0, 0), (1, 0)), mode="edge"), np.pad(g2, ((1, 0), (0, 0)), mode="edge")
    out[0::2, 0::2, 1] = 0.25 * (g1l[:, :-1] + g1l[:, 1:] + g2u[:-1] + g2u[1:])
    g2r, g1d = np.pad(g2, ((0, 0), (0, 1)), mode="edge"), np.pad(g1, ((0, 1), (0, 0)), mode="edge")
    out[1::2, 1::2, 1] = 0.25 * (g2r[:, :-1] + g2r[:, 1:] + g1d[:-1] + g1d[1:])
    return out[:h, :w]
