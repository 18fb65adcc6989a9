"""Colour in one place: the sRGB transfer curve both ways and the Rec. 709 luma weights, which
the measures, the night scenes and the chroma clean-up all use (one copy, so a luma is the same
figure wherever it is computed)."""

from __future__ import annotations

import numpy as np

LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
"""Rec. 709 luma weights: on sRGB-encoded values for the measures (as ``real-dim/stats.csv``
does), on linear RGB for the night scenes' light."""


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Invert the sRGB transfer curve (IEC 61966-2-1); float in, float out."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer curve to linear values clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
