"""The lights of a synthetic night scene: how they are drawn and how they fall on the frame.

:mod:`degradation.night_scenes` multiplies a clean photo by the illumination field built here and
adds the small emissive sources (lamp bulbs, lit windows) rendered here. Everything is drawn from
the caller's ``numpy.random.Generator`` and returned as named tuples, so a scene's lights are
hashable, comparable and JSON friendly, and rendering them again gives the same field.

Positions are fractions of the frame height and width (a light may sit slightly outside the
frame, as a street lamp just out of shot still lights it), radii fractions of the frame diagonal,
and light colours have unit luma, so a light's ``intensity`` alone sets how bright it is and the
luma of the illumination is the plain sum of the intensities' fields.

Ranges (module constants below): ambient level log-uniform in [0.05, 1]; 0-4 point lights of
peak intensity 0.5-5 (so 0.5-100x the ambient), radius 3-40 % of the diagonal, 70 % of them in the
upper half; 0-2 soft area lights of intensity 0.3-3 and size 4-20 % of the diagonal, up to 3:1;
vignetting 0-60 % at the corners; a bright sky (35 % of frames) over the top 20-50 % of the frame,
3-30x the ambient level, with a horizon 2-10 % of the height soft; emissive sources (60 % of
frames, 1-6 of them) 2-12 px across with a ``gain`` of 5-50 (what it is 5-50x of is the
caller's choice: :mod:`degradation.night_scenes` uses the sensor's full scale in the input and a
white surface under the local light in the target), half of them on a point light's centre when
there is one.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from degradation.camera import log_uniform
from imaging.colour import LUMA_WEIGHTS

__all__ = [
    "PALETTE",
    "AreaLight",
    "Emitter",
    "PointLight",
    "Sky",
    "add_emitters",
    "illumination",
    "sample_area_lights",
    "sample_emitters",
    "sample_point_lights",
    "sample_sky",
    "unit_luma",
]

RGB = tuple[float, float, float]

PALETTE: dict[str, RGB] = {
    "sodium": (1.0, 0.55, 0.2),
    "tungsten": (1.0, 0.75, 0.5),
    "led": (0.85, 0.95, 1.0),
    "neutral": (1.0, 1.0, 1.0),
}
"""Light colours of real night streets, before normalising to unit luma."""

SKY_COLOURS: dict[str, RGB] = {
    "twilight": (0.75, 0.85, 1.0),
    "skyglow": (1.0, 0.78, 0.6),
    "neutral": (1.0, 1.0, 1.0),
}
"""A dusk sky is blue; a city's overcast night sky glows orange from the street lights."""

AMBIENT_CASTS = ("sodium", "led", "neutral")
AMBIENT_RANGE = (0.05, 1.0)
POINT_LIGHT_COUNT = (0, 4)
POINT_RADIUS_RANGE = (0.03, 0.40)
POINT_INTENSITY_RANGE = (0.5, 5.0)
POINT_UPPER_HALF_PROBABILITY = 0.7
AREA_LIGHT_COUNT = (0, 2)
AREA_SIZE_RANGE = (0.04, 0.20)
AREA_ASPECT_MAX = 3.0
AREA_INTENSITY_RANGE = (0.3, 3.0)
VIGNETTING_RANGE = (0.0, 0.6)
SKY_PROBABILITY = 0.35
SKY_HEIGHT_RANGE = (0.2, 0.5)
SKY_SOFTNESS_RANGE = (0.02, 0.10)
SKY_GAIN_RANGE = (3.0, 30.0)
EMITTER_PROBABILITY = 0.6
EMITTER_COUNT = (1, 6)
EMITTER_SIZE_PX = (2, 12)
EMITTER_GAIN_RANGE = (5.0, 50.0)
EMITTER_ON_LAMP_PROBABILITY = 0.5
EMITTER_GLOW = 0.04
EMITTER_GLOW_WIDTH = 0.6
"""An emitter's glow (lens glare) peaks at 4 % of its core and spreads 0.6x its half-size: in
the target it is what keeps a clipped bulb's colour at its rim."""


class PointLight(NamedTuple):
    y: float
    x: float
    radius: float
    intensity: float
    colour: RGB


class AreaLight(NamedTuple):
    y: float
    x: float
    size_y: float
    size_x: float
    angle: float
    intensity: float
    colour: RGB


class Sky(NamedTuple):
    horizon: float
    softness: float
    gain: float
    colour: RGB


class Emitter(NamedTuple):
    y: float
    x: float
    rect: bool
    half_h: float
    half_w: float
    gain: float
    colour: RGB


def unit_luma(rgb: RGB | np.ndarray) -> RGB:
    """Scale a colour to luma 1, so intensities alone say how bright a light is."""
    c = np.asarray(rgb, dtype=np.float64)
    c = c / float(c @ LUMA_WEIGHTS.astype(np.float64))
    return (float(c[0]), float(c[1]), float(c[2]))


def _pick(rng: np.random.Generator, names: tuple[str, ...] | list[str]) -> str:
    return names[int(rng.integers(len(names)))]


def sample_point_lights(rng: np.random.Generator) -> tuple[PointLight, ...]:
    """Street lamps and porch lights: mostly above the eye line, some just outside the frame."""
    lights = []
    for _ in range(int(rng.integers(POINT_LIGHT_COUNT[0], POINT_LIGHT_COUNT[1] + 1))):
        upper = rng.uniform() < POINT_UPPER_HALF_PROBABILITY
        y = float(rng.uniform(-0.1, 0.5) if upper else rng.uniform(0.0, 1.1))
        x = float(rng.uniform(-0.1, 1.1))
        radius = log_uniform(rng, *POINT_RADIUS_RANGE)
        intensity = log_uniform(rng, *POINT_INTENSITY_RANGE)
        colour = unit_luma(PALETTE[_pick(rng, list(PALETTE))])
        lights.append(PointLight(y, x, radius, intensity, colour))
    return tuple(lights)


def sample_area_lights(rng: np.random.Generator) -> tuple[AreaLight, ...]:
    """Lit windows and shop fronts: broad, soft, nearly axis-aligned, at street level or above."""
    lights = []
    for _ in range(int(rng.integers(AREA_LIGHT_COUNT[0], AREA_LIGHT_COUNT[1] + 1))):
        y = float(rng.uniform(0.15, 0.9))
        x = float(rng.uniform(0.0, 1.0))
        size = log_uniform(rng, *AREA_SIZE_RANGE)
        aspect = log_uniform(rng, 1.0, AREA_ASPECT_MAX)
        wide = rng.uniform() < 0.5
        size_y, size_x = (size / aspect, size) if wide else (size, size / aspect)
        angle = float(rng.uniform(-0.3, 0.3))
        intensity = log_uniform(rng, *AREA_INTENSITY_RANGE)
        colour = unit_luma(PALETTE[_pick(rng, list(PALETTE))])
        lights.append(AreaLight(y, x, size_y, size_x, angle, intensity, colour))
    return tuple(lights)


def sample_sky(rng: np.random.Generator) -> Sky | None:
    """A dusk or city-glow sky, much brighter than the street: the classic backlit night shot."""
    if rng.uniform() >= SKY_PROBABILITY:
        return None
    horizon = float(rng.uniform(*SKY_HEIGHT_RANGE))
    softness = float(rng.uniform(*SKY_SOFTNESS_RANGE))
    gain = log_uniform(rng, *SKY_GAIN_RANGE)
    colour = unit_luma(SKY_COLOURS[_pick(rng, list(SKY_COLOURS))])
    return Sky(horizon, softness, gain, colour)


def sample_emitters(
    rng: np.random.Generator, points: tuple[PointLight, ...]
) -> tuple[Emitter, ...]:
    """Bulbs and windows seen directly; a bulb sits where a lamp's light comes from."""
    if rng.uniform() >= EMITTER_PROBABILITY:
        return ()
    visible = [p for p in points if 0.0 <= p.y <= 1.0 and 0.0 <= p.x <= 1.0]
    out = []
    for _ in range(int(rng.integers(EMITTER_COUNT[0], EMITTER_COUNT[1] + 1))):
        rect = bool(rng.uniform() < 0.5)
        lo, hi = EMITTER_SIZE_PX
        half_h = float(rng.uniform(lo, hi)) / 2.0
        half_w = float(rng.uniform(lo, hi)) / 2.0 if rect else half_h
        gain = log_uniform(rng, *EMITTER_GAIN_RANGE)
        if visible and rng.uniform() < EMITTER_ON_LAMP_PROBABILITY:
            lamp = visible[int(rng.integers(len(visible)))]
            y, x, colour = lamp.y, lamp.x, lamp.colour
        else:
            y, x = float(rng.uniform(0.03, 0.6)), float(rng.uniform(0.03, 0.97))
            colour = unit_luma(PALETTE[_pick(rng, list(PALETTE))])
        out.append(Emitter(y, x, rect, half_h, half_w, gain, colour))
    return tuple(out)


def illumination(
    height: int,
    width: int,
    ambient: float,
    ambient_colour: RGB,
    points: tuple[PointLight, ...],
    areas: tuple[AreaLight, ...],
    sky: Sky | None,
    vignetting: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Light reaching each pixel, float32 H x W x 3, and its luma, H x W (always > 0).

    Each light contributes an H x W intensity field; colours have unit luma, so the luma is the
    sum of the fields and the colour a weighted mix, which gives mixed local casts for free.
    """
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    diag = math.hypot(height, width)
    py, px = ys * (height / diag), xs * (width / diag)  # coordinates in diagonals
    n = len(points) + len(areas) + (sky is not None)
    fields = np.empty((n, height, width), dtype=np.float32)
    colours = [p.colour for p in points] + [a.colour for a in areas]
    for f, p in zip(fields, points, strict=False):
        # I / (1 + d^2 / r^2), with the 1 folded into the column term: two passes a light.
        dy2 = (py - p.y * height / diag) ** 2 / p.radius**2
        dx2 = (px - p.x * width / diag) ** 2 / p.radius**2 + 1.0
        np.add(dy2[:, None], dx2[None, :], out=f)
        np.divide(p.intensity, f, out=f)
    for f, a in zip(fields[len(points) :], areas, strict=False):
        _gaussian_blob(f, py - a.y * height / diag, px - a.x * width / diag, a)
    if sky is not None:
        fields[-1] = _sky_profile(ys, sky, ambient)[:, None]
        colours.append(sky.colour)
    flat = fields.reshape(n, height * width)
    rgb = (flat.T @ np.asarray(colours, dtype=np.float32).reshape(n, 3)).reshape(height, width, 3)
    rgb += np.float32(ambient) * np.asarray(ambient_colour, dtype=np.float32)
    lum = flat.sum(axis=0).reshape(height, width) + np.float32(ambient)
    if vignetting > 0.0:
        vig = _vignette(ys, xs, height, width, vignetting)
        rgb *= vig[:, :, None]
        lum *= vig
    return rgb, lum


def _gaussian_blob(out: np.ndarray, dy: np.ndarray, dx: np.ndarray, a: AreaLight) -> None:
    """A rotated anisotropic Gaussian written into ``out``, as a quadratic form in (dy, dx)."""
    cos, sin = math.cos(a.angle), math.sin(a.angle)
    sx2, sy2 = a.size_x**2, a.size_y**2
    qxx = cos * cos / sx2 + sin * sin / sy2
    qyy = sin * sin / sx2 + cos * cos / sy2
    qxy = 2.0 * cos * sin * (1.0 / sx2 - 1.0 / sy2)
    np.multiply((qxy * dy)[:, None], dx[None, :], out=out)
    out += (qyy * dy * dy)[:, None]
    out += (qxx * dx * dx)[None, :]
    out *= -0.5
    np.exp(out, out=out)
    out *= np.float32(a.intensity)


def _sky_profile(ys: np.ndarray, sky: Sky, ambient: float) -> np.ndarray:
    """The sky's light by row: a soft-edged band, ``gain`` x the ambient at the top of the frame
    and 40 % more just above the horizon, where a city's glow is brightest."""
    band = 1.0 / (1.0 + np.exp((ys - sky.horizon) / sky.softness))
    towards_horizon = 1.0 + 0.4 * np.clip(ys / sky.horizon, 0.0, 1.0)
    return (sky.gain * ambient * band * towards_horizon).astype(np.float32)


def _vignette(
    ys: np.ndarray, xs: np.ndarray, height: int, width: int, strength: float
) -> np.ndarray:
    """Natural cos^4 falloff, 1 / (1 + t^2)^2, scaled so the corners lose ``strength``."""
    # Squared distance from the centre in units of the half-diagonal (1 at the corners).
    half = math.hypot(height, width) / 2.0
    dy2 = ((ys - 0.5) * (height / half)) ** 2
    dx2 = ((xs - 0.5) * (width / half)) ** 2
    t2 = (dy2[:, None] + dx2[None, :]) * ((1.0 - strength) ** -0.5 - 1.0)
    return (1.0 / (1.0 + t2) ** 2).astype(np.float32)


def add_emitters(
    out: np.ndarray, emitters: tuple[Emitter, ...], weights: list[float]
) -> np.ndarray:
    """Add the emitters' radiance, each scaled by its weight, to ``out`` (H x W x 3) in place.

    Each source is rendered only in its own small window: its anti-aliased core (a disc or a
    rectangle) plus a Gaussian glow, so a scene of tiny lamps costs next to nothing.
    """
    height, width = out.shape[:2]
    for e, weight in zip(emitters, weights, strict=True):
        cy, cx = e.y * height - 0.5, e.x * width - 0.5
        size = max(e.half_h, e.half_w)
        sigma = EMITTER_GLOW_WIDTH * size
        reach = int(math.ceil(size + 3.0 * sigma)) + 1
        y0, y1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, height)
        x0, x1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, width)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.abs(np.arange(y0, y1, dtype=np.float32) - cy)[:, None]
        dx = np.abs(np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
        if e.rect:
            outside = np.maximum(dy - e.half_h, dx - e.half_w)
        else:
            outside = np.sqrt(dy * dy + dx * dx) - e.half_h
        core = np.clip(0.5 - outside, 0.0, 1.0)
        glow = EMITTER_GLOW * np.exp(-0.5 * (np.maximum(outside, 0.0) / sigma) ** 2)
        profile = np.maximum(core, glow) * np.float32(weight * e.gain)
        out[y0:y1, x0:x1] += profile[:, :, None] * np.asarray(e.colour, dtype=np.float32)
    return out
