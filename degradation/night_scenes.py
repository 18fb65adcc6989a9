"""Synthetic night *scenes* for training version 2: light that varies across the frame.

:mod:`degradation.recipe` darkens a photo by one global factor, so a model trained on it learns
one global gain; on real night photos that gain blows out lamps and lit windows while the
shadows stay black. Here the clean photo is lit by a field of lights instead (ambient light with
a colour cast, street lamps, lit windows, vignetting, sometimes a bright sky; see
:mod:`degradation.lights`), small emissive sources are added that clip, and the pair's target is
what a good, well-exposed photo of that scene looks like: light *partly* equalised, neutral white
balance, no blur, noise or JPEG. Same habits as the evaluation recipe: every draw comes from the
``numpy.random.Generator`` passed in, in a fixed order, and is recorded in a frozen
:class:`SceneParams`; numpy and Pillow only, so it runs in DataLoader workers.

The input, in linear light and in the order a camera makes it:

1. scene radiance = clean photo x illumination field + emissive sources (bulbs are left out of
   the metering, so they land at 5-50x the sensor's full scale and clip unless shake smears them
   thin; in the target they are 5-50x a white surface under the local light: the bulbs' range is
   tone-mapped too);
2. exposure: one scale that puts the median luma (after the camera's white-balance gains, before
   noise and tone curve) log-uniformly in [0.002, 0.08], from very dark to mildly dark, and at
   least 1.5x below the target's (which only binds for low-key photos);
3. camera shake: the motion kernels of :mod:`degradation.recipe` (5-31 px, 20 % sharp), applied
   to the unclipped radiance so a shaken lamp stays a bright streak;
4. sensor: RGGB Bayer mosaic, Poisson shot noise (full well 300-6000 photons), Gaussian read noise
   (0.05-0.6 % of full scale), a saturating well, then bilinear demosaicing, which makes the noise
   spatially correlated and coloured as in real cameras;
5. camera processing: automatic white balance that removes only 0-80 % of the frame's mean cast
   (+-8 % jitter, gains >= 1 so clipped areas stay white), gamma 0.85-1.15, sRGB, JPEG 60-95 4:2:0.

The target is ``clean_linear * (Lum(L) / ref) ** kappa`` with ``kappa`` in [0.15, 0.35]: most of
the light variation is removed (the model must lift shadows more than lamp-lit areas) but some
falloff stays, so results look like photographs, not flat tone-mapped HDR. ``ref`` puts the
target's median luma at the clean photo's own median clamped to sRGB 0.35-0.45, lower where that
would blow highlights the clean photo did not have (a low-key photo stays low-key): derived from
the content, never drawn, since a random target brightness could not be learnt from the input. The
emissive sources are added under the same local gain and pass, with the rest, through a soft
highlight shoulder, so bulbs are white at their cores and keep their colour at the rims.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from degradation.camera import (
    bayer_gains,
    blur,
    demosaic_bilinear,
    jpeg_roundtrip,
    log_uniform,
    mosaic,
)
from degradation.lights import (
    AMBIENT_CASTS,
    AMBIENT_RANGE,
    PALETTE,
    VIGNETTING_RANGE,
    AreaLight,
    Emitter,
    PointLight,
    Sky,
    add_emitters,
    illumination,
    sample_area_lights,
    sample_emitters,
    sample_point_lights,
    sample_sky,
    unit_luma,
)
from degradation.recipe import (
    FULL_WELL_RANGE,
    GAMMA_RANGE,
    JPEG_QUALITY_RANGE,
    KERNEL_SIZE_RANGE,
    READ_NOISE_RANGE,
    SHARP_PROBABILITY,
    WHITE_BALANCE_JITTER,
    ShakeKernel,
    motion_kernel,
)
from imaging.colour import LUMA_WEIGHTS, linear_to_srgb, srgb_to_linear

__all__ = ["SceneParams", "degrade_scene", "sample_scene_params"]

MIN_SIZE = 16
MEDIAN_LUMA_RANGE = (0.002, 0.08)
AWB_CORRECTION_RANGE = (0.0, 0.8)
KAPPA_RANGE = (0.15, 0.35)
TARGET_MEDIAN_SRGB = (0.35, 0.45)
SHOULDER_KNEE = 0.8
"""Linear level above which the target rolls off smoothly towards 1 instead of clipping."""
HIGHLIGHT_HEADROOM = 1.25
TARGET_HIGHLIGHT = 0.6
"""The target's 99th-percentile luma may reach 1.25x the clean photo's, or linear 0.6."""
MIN_DARKENING = 1.5
"""The input's median luma stays at least this much below the target's (low-key photos)."""
WELL_CAP = 4.0
"""Signal (full-scale units) beyond which photon counting stops mattering: the well is full."""

_LUT_SIZE = 65536

_SRGB_U8_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


@dataclass(frozen=True)
class SceneParams(ShakeKernel):
    """Everything one scene drew, so a training log can report it and a test can replay it.

    Light positions are fractions of the frame, radii fractions of its diagonal, colours unit
    luma (see :mod:`degradation.lights`). ``median_luma`` is the exposure the input was given,
    ``kappa`` how much of the light's variation the target keeps, ``awb_correction`` the share
    of the mean cast the camera removed; the rest is as in ``DegradationParams``.
    """

    ambient: float
    ambient_cast: str
    ambient_cast_strength: float
    ambient_colour: tuple[float, float, float]
    point_lights: tuple[PointLight, ...]
    area_lights: tuple[AreaLight, ...]
    vignetting: float
    sky: Sky | None
    emitters: tuple[Emitter, ...]
    median_luma: float
    kernel_size: int
    kernel: tuple[tuple[float, ...], ...] = field(repr=False)
    full_well: float
    read_noise: float
    awb_correction: float
    white_balance_jitter: tuple[float, float, float]
    gamma: float
    jpeg_quality: int
    kappa: float

    def summary(self) -> dict[str, Any]:
        """The draws as a JSON-ready dict: scalars, counts and the lights as plain lists."""
        out = asdict(self)
        out.pop("kernel")
        for name in ("point_lights", "area_lights", "emitters"):
            out[name] = [list(light) for light in getattr(self, name)]
            out[f"{name}_count"] = len(out[name])
        out["sky"] = list(self.sky) if self.sky is not None else None
        out["sky_gain"] = self.sky.gain if self.sky is not None else 0.0
        return json_ready(out)


def json_ready(value: Any) -> Any:
    """Tuples (of named tuples) to lists, recursively, so ``json.dumps`` needs no help."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def sample_scene_params(rng: np.random.Generator, height: int, width: int) -> SceneParams:
    """Draw one scene (see the module docstrings for the ranges and why)."""
    ambient = log_uniform(rng, *AMBIENT_RANGE)
    cast = AMBIENT_CASTS[int(rng.integers(len(AMBIENT_CASTS)))]
    strength = float(rng.uniform())
    tint = 1.0 + strength * (np.asarray(PALETTE[cast]) - 1.0)
    points = sample_point_lights(rng)
    areas = sample_area_lights(rng)
    vignetting = float(rng.uniform(*VIGNETTING_RANGE))
    sky = sample_sky(rng)
    emitters = _fit_emitters(sample_emitters(rng, points), height, width)
    median_luma = log_uniform(rng, *MEDIAN_LUMA_RANGE)
    if rng.uniform() < SHARP_PROBABILITY:
        size = 1
    else:
        lo, hi = KERNEL_SIZE_RANGE
        size = int(rng.integers(lo // 2, hi // 2 + 1)) * 2 + 1  # as in degradation.sample_params
    kernel = motion_kernel(rng, size)
    full_well = log_uniform(rng, *FULL_WELL_RANGE)
    read_noise = log_uniform(rng, *READ_NOISE_RANGE)
    awb = float(rng.uniform(*AWB_CORRECTION_RANGE))
    jitter = 1.0 + rng.uniform(-WHITE_BALANCE_JITTER, WHITE_BALANCE_JITTER, 3)
    gamma = float(rng.uniform(*GAMMA_RANGE))
    quality = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    kappa = float(rng.uniform(*KAPPA_RANGE))
    return SceneParams(
        ambient=ambient,
        ambient_cast=cast,
        ambient_cast_strength=strength,
        ambient_colour=unit_luma(tint),
        point_lights=points,
        area_lights=areas,
        vignetting=vignetting,
        sky=sky,
        emitters=emitters,
        median_luma=median_luma,
        kernel_size=size,
        kernel=tuple(tuple(float(v) for v in row) for row in kernel),
        full_well=full_well,
        read_noise=read_noise,
        awb_correction=awb,
        white_balance_jitter=(float(jitter[0]), float(jitter[1]), float(jitter[2])),
        gamma=gamma,
        jpeg_quality=quality,
        kappa=kappa,
    )


def _fit_emitters(emitters: tuple[Emitter, ...], height: int, width: int) -> tuple[Emitter, ...]:
    """Keep lamps small next to the frame: on a 16 px crop a 12 px bulb would be the picture."""
    limit = min(height, width) / 8.0
    return tuple(
        e._replace(half_h=min(e.half_h, limit), half_w=min(e.half_w, limit)) for e in emitters
    )


def degrade_scene(
    clean_srgb: np.ndarray,
    rng: np.random.Generator,
    params: SceneParams | None = None,
) -> tuple[np.ndarray, np.ndarray, SceneParams]:
    """Turn a clean sRGB photo into a night shot and the photo a good camera would have made.

    ``clean_srgb`` is H x W x 3 in [0, 1] (float, or uint8 scaled by 1/255), at least 16 x 16.
    Returns ``(low_srgb, target_srgb, params)``: float32 H x W x 3 in [0, 1] each. When ``params``
    is None they are drawn from ``rng`` first; the noise is always drawn from ``rng`` afterwards,
    so the same rng state gives the same pixels.
    """
    clean = _linear(clean_srgb)
    h, w = clean.shape[:2]
    if params is None:
        params = sample_scene_params(rng, h, w)
    p = params
    light, lum = illumination(
        h, w, p.ambient, p.ambient_colour, p.point_lights, p.area_lights, p.sky, p.vignetting
    )
    # The target's lamps are as bright relative to a white surface under the light where they sit.
    local = [
        float(lum[min(max(int(e.y * h), 0), h - 1), min(max(int(e.x * w), 0), w - 1)])
        for e in p.emitters
    ]
    target, target_median = _target(clean, lum, p, local)
    scene = clean * light
    gains = _white_balance(light, p)
    median = min(p.median_luma, target_median / MIN_DARKENING)
    exposure = median / max(float(np.median(_sub(scene) @ (LUMA_WEIGHTS * gains))), 1e-12)
    # The camera meters the scene, not the bulbs, so they land 5-50x past full scale and clip.
    add_emitters(scene, p.emitters, [1.0 / exposure] * len(p.emitters))
    raw = _sensor(blur(scene, p.kernel_array), exposure, rng, p)
    return _develop(raw, gains, p), target, p


def _linear(clean_srgb: np.ndarray) -> np.ndarray:
    img = np.asarray(clean_srgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {img.shape}")
    if min(img.shape[:2]) < MIN_SIZE:
        raise ValueError(f"expected at least {MIN_SIZE} x {MIN_SIZE} pixels, got {img.shape[:2]}")
    if img.dtype == np.uint8:
        return _SRGB_U8_TO_LINEAR[img]
    return srgb_to_linear(img.astype(np.float32)).astype(np.float32)


def _sub(img: np.ndarray) -> np.ndarray:
    """A regular subsample of about 16k pixels: as good as the whole frame for a median or a
    mean colour (cameras meter on thumbnails too), and ten times cheaper."""
    step = max(1, int(math.sqrt(img.shape[0] * img.shape[1] / 16384.0)))
    return img[::step, ::step]


def _target(
    clean: np.ndarray, lum: np.ndarray, params: SceneParams, local: list[float]
) -> tuple[np.ndarray, float]:
    """The scene as a well-exposed photo (light partly equalised, no cast, lamps rolled off),
    and its median luma in linear light, which the input's exposure must stay below."""
    gain = lum**params.kappa
    scale, median = _exposure_of_target(clean, gain)
    lin = clean * (gain * np.float32(scale))[:, :, None]
    add_emitters(lin, params.emitters, [scale * v**params.kappa for v in local])
    # Highlights roll off instead of clipping: identity up to the knee, then an exponential with
    # slope 1 there that tends to 1, so lamp cores go white while their rims keep their colour.
    over = lin > SHOULDER_KNEE
    k = SHOULDER_KNEE
    lin[over] = k + (1.0 - k) * (1.0 - np.exp((k - lin[over]) / (1.0 - k)))
    return linear_to_srgb(lin).astype(np.float32), median


def _exposure_of_target(clean: np.ndarray, gain: np.ndarray) -> tuple[float, float]:
    """The ``ref ** -kappa`` that exposes the target well, from the content alone (no draw),
    and the median luma it gives.

    The median luma goes to the clean photo's own, clamped into sRGB 0.35-0.45, unless that would
    push the brightest 1 % of the frame past 1.25x the clean photo's own brightest 1 % (or past
    linear 0.6 if those were darker): a low-key photo, owls on a black background, keeps its
    black background instead of being lifted until the owls are white.
    """
    lo, hi = (float(v) for v in srgb_to_linear(np.asarray(TARGET_MEDIAN_SRGB)))
    clean_luma = _sub(clean) @ LUMA_WEIGHTS
    lit = clean_luma * _sub(gain)
    c50, c99 = np.percentile(clean_luma, [50.0, 99.0])
    t50, t99 = np.percentile(lit, [50.0, 99.0])
    wanted = min(max(float(c50), lo), hi)
    ceiling = max(float(c99) * HIGHLIGHT_HEADROOM, TARGET_HIGHLIGHT)
    scale = min(wanted / max(float(t50), 1e-6), ceiling / max(float(t99), 1e-6))
    return scale, scale * float(t50)


def _white_balance(light: np.ndarray, params: SceneParams) -> np.ndarray:
    """The camera's per-channel gains: a partial correction of the frame's mean light colour.

    Gains are normalised to a minimum of 1 as camera pipelines do, so no channel is attenuated
    and what clipped on the sensor stays white.
    """
    mean = _sub(light).reshape(-1, 3).mean(axis=0).astype(np.float64)
    cast = mean / float(mean @ LUMA_WEIGHTS)
    gains = cast ** (-params.awb_correction) * np.asarray(params.white_balance_jitter)
    return (gains / gains.min()).astype(np.float32)


def _sensor(
    scene: np.ndarray, exposure: float, rng: np.random.Generator, params: SceneParams
) -> np.ndarray:
    """An RGGB sensor's raw frame, H x W in [0, 1]: photon and read noise, then saturation."""
    signal = np.clip(mosaic(scene) * np.float32(exposure), 0.0, WELL_CAP)
    photons = rng.poisson(signal * params.full_well).astype(np.float32)
    noise = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(params.read_noise)
    return np.clip(photons * np.float32(1.0 / params.full_well) + noise, 0.0, 1.0)


def _develop(raw: np.ndarray, gains: np.ndarray, params: SceneParams) -> np.ndarray:
    """The camera's own processing: white balance on the raw, demosaic, tone curve, sRGB, JPEG.

    Tone curve and sRGB go through one 16-bit lookup table, cheaper than two power laws: its
    steps stay under a quarter of an 8-bit level (that worst case in the last 0.03 % above black
    with gamma < 1, where the read noise is several levels).
    """
    rgb = demosaic_bilinear(np.clip(bayer_gains(raw, gains), 0.0, 1.0))
    grid = np.linspace(0.0, 1.0, _LUT_SIZE)
    table = linear_to_srgb(np.power(grid, params.gamma)).astype(np.float32)
    srgb = table[np.rint(rgb * np.float32(_LUT_SIZE - 1)).astype(np.uint16)]
    return jpeg_roundtrip(srgb, params.jpeg_quality).astype(np.float32)
