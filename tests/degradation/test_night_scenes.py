"""The night-scene training recipe must light frames unevenly, keep the camera physical, stay
reproducible, and leave the evaluation recipe exactly as it was.

Each test names, in its docstring, the breakage it is there to catch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from degradation.camera import blur, demosaic_bilinear, mosaic
from degradation.lights import PALETTE, Emitter, PointLight, Sky, unit_luma
from degradation.night_scenes import (
    KAPPA_RANGE,
    MEDIAN_LUMA_RANGE,
    SceneParams,
    degrade_scene,
    sample_scene_params,
)
from degradation.recipe import _blur, degrade, motion_kernel, sample_params
from imaging.colour import LUMA_WEIGHTS as LUMA
from imaging.colour import srgb_to_linear

WHITE = (1.0, 1.0, 1.0)


def _photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A textured mid-tone scene with colour: stands in for a clean sRGB photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([0.5 + 0.2 * np.sin(xx / 7), 0.45 + 0.2 * np.cos(yy / 9), 0.4 + 0 * xx], -1)
    return np.clip(base + 0.08 * rng.random((h, w, 3)), 0, 1).astype(np.float32)


def _plain(**changes: object) -> SceneParams:
    """A scene with nothing in it but ambient light and a sharp, clean, neutral camera."""
    base = sample_scene_params(np.random.default_rng(0), 96, 128)
    plain = replace(
        base,
        ambient=0.2,
        ambient_colour=WHITE,
        point_lights=(),
        area_lights=(),
        vignetting=0.0,
        sky=None,
        emitters=(),
        median_luma=0.02,
        kernel_size=1,
        kernel=((1.0,),),
        full_well=6000.0,
        read_noise=5e-4,
        awb_correction=0.0,
        white_balance_jitter=WHITE,
        gamma=1.0,
        jpeg_quality=95,
        kappa=0.25,
    )
    return replace(plain, **changes)  # type: ignore[arg-type]


def _luma(srgb: np.ndarray) -> np.ndarray:
    return srgb_to_linear(srgb.astype(np.float64)) @ LUMA.astype(np.float64)


def _blocks(x: np.ndarray, size: int = 8) -> np.ndarray:
    h, w = (x.shape[0] // size) * size, (x.shape[1] // size) * size
    return x[:h, :w].reshape(h // size, size, w // size, size).mean(axis=(1, 3)).ravel()


def test_same_seed_same_pixels_different_seed_differs() -> None:
    """Catches any draw that bypasses the rng passed in (global numpy state, time, hashing)."""
    img = _photo()
    a_low, a_tgt, a_p = degrade_scene(img, np.random.default_rng(7))
    b_low, b_tgt, b_p = degrade_scene(img, np.random.default_rng(7))
    c_low, _, _ = degrade_scene(img, np.random.default_rng(8))
    assert np.array_equal(a_low, b_low) and np.array_equal(a_tgt, b_tgt)
    assert a_p == b_p
    assert not np.array_equal(a_low, c_low)


def test_replay_with_params_and_json_summary() -> None:
    """Catches params that do not record every draw (replay would differ) or a summary that
    json cannot write (numpy scalars, named tuples left as objects)."""
    img = _photo()
    params = sample_scene_params(np.random.default_rng(3), *img.shape[:2])
    a = degrade_scene(img, np.random.default_rng(9), params)
    b = degrade_scene(img, np.random.default_rng(9), params)
    assert a[2] is params and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    summary = json.loads(json.dumps(params.summary()))
    assert "kernel" not in summary
    assert summary["point_lights_count"] == len(params.point_lights)
    assert summary["jpeg_quality"] == params.jpeg_quality


@pytest.mark.parametrize("shape", [(16, 16), (17, 33), (33, 17), (321, 481)])
def test_shapes_dtype_and_range(shape: tuple[int, int]) -> None:
    """Catches odd sizes breaking the Bayer phase, demosaic crops or lamp windows at borders."""
    img = _photo(*shape)
    for seed in range(3):
        low, target, _ = degrade_scene(img, np.random.default_rng(seed))
        for out in (low, target):
            assert out.shape == img.shape and out.dtype == np.float32
            assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_uint8_input_matches_float_input() -> None:
    """Catches the uint8 lookup table drifting from srgb_to_linear."""
    u8 = (_photo() * 255).round().astype(np.uint8)
    a = degrade_scene(u8, np.random.default_rng(4))
    b = degrade_scene(u8.astype(np.float32) / 255.0, np.random.default_rng(4))
    assert np.abs(a[1] - b[1]).max() < 1e-4
    assert np.abs(a[0] - b[0]).mean() < 1e-3


def test_rejects_small_and_non_rgb() -> None:
    with pytest.raises(ValueError):
        degrade_scene(np.zeros((15, 40, 3), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        degrade_scene(np.zeros((32, 32), np.float32), np.random.default_rng(0))


def test_input_much_darker_than_target() -> None:
    """Catches an exposure step that does not darken (or a target that is not well exposed)."""
    img = _photo()
    ratios, medians = [], []
    for seed in range(8):
        low, target, _ = degrade_scene(img, np.random.default_rng(seed))
        ratios.append(_luma(target).mean() / _luma(low).mean())
        medians.append(float(np.median(np.power(_luma(target), 1 / 2.2))))
    assert np.median(ratios) > 4.0 and min(ratios) > 1.2
    assert all(0.25 <= m <= 0.5 for m in medians)


@pytest.mark.parametrize(
    "lights",
    [
        {"point_lights": (PointLight(0.25, 0.3, 0.08, 5.0, WHITE),)},
        {"sky": Sky(0.35, 0.05, 20.0, WHITE)},
    ],
    ids=["point-light", "bright-sky"],
)
def test_light_varies_across_frame_not_one_gain(lights: dict[str, object]) -> None:
    """Catches a recipe that is one global gain (the old one) or a target that copies the input's
    light: the target/input ratio must differ between the input's brightest and darkest tenths,
    while with ambient light only (the control) it does not."""
    img = _photo()

    def spread(params: SceneParams) -> float:
        low, target, _ = degrade_scene(img, np.random.default_rng(1), params)
        lo_b, tg_b = _blocks(_luma(low)), _blocks(_luma(target))
        order = np.argsort(lo_b)
        tenth = max(1, len(order) // 10)
        dark, bright = order[:tenth], order[-tenth:]
        return float((tg_b[dark] / lo_b[dark]).mean() / (tg_b[bright] / lo_b[bright]).mean())

    assert spread(_plain(**lights)) > 2.0
    assert spread(_plain()) < 1.5


def test_target_is_not_the_clean_photo_under_varying_light() -> None:
    """Catches a target that ignores the light field (kappa applied to nothing)."""
    img = _photo()
    params = _plain(point_lights=(PointLight(0.2, 0.2, 0.1, 5.0, WHITE),), kappa=0.3)
    _, target, _ = degrade_scene(img, np.random.default_rng(0), params)
    ratio = _blocks(_luma(target)) / _blocks(_luma(img))
    assert ratio.max() / ratio.min() > 1.5


def test_emissive_lamps_clip_in_the_input_and_go_white_with_coloured_rims() -> None:
    """Catches lamps too dim to clip, a target that keeps their colour at the core (a clip that
    preserves hue) or loses it at the rim too (a lamp desaturated as a whole)."""
    img = np.full((96, 128, 3), 0.4, dtype=np.float32)  # neutral, so any colour is the lamp's
    sodium = unit_luma(PALETTE["sodium"])
    lamp = Emitter(0.5, 0.5, False, 5.0, 5.0, 40.0, sodium)
    low, target, _ = degrade_scene(img, np.random.default_rng(2), _plain(emitters=(lamp,)))
    dark, _, _ = degrade_scene(img, np.random.default_rng(2), _plain())
    core = (slice(46, 50), slice(62, 66))
    # Clipped on the sensor, so white (JPEG's 4:2:0 chroma only blurs its colour rim inwards).
    assert low[core].mean() >= 0.95 and (low[core] >= 0.99).all(axis=-1).any()
    assert dark.max() < 0.9  # the same frame without the lamp has nothing near clipping
    assert target[core].min() >= 0.97
    rim = target[40:56, 56:72]
    assert ((rim[..., 0] - rim[..., 2]) > 0.15).any()


def test_target_highlights_roll_off_instead_of_clipping() -> None:
    """Catches a target that hard-clips what the light pushes past 1: a lamp-lit white wall must
    come out bright but graded, with no flat plateau at 1.0."""
    img = _photo()
    img[20:60, 20:70] = 0.95
    params = _plain(point_lights=(PointLight(0.4, 0.35, 0.15, 5.0, WHITE),), kappa=0.35)
    _, target, _ = degrade_scene(img, np.random.default_rng(0), params)
    assert target.max() > 0.93
    assert (target >= 0.999).sum() == 0


def test_white_balance_neutral_in_target_partial_in_input() -> None:
    """Catches the light's colour leaking into the target, or the camera's white balance being
    full (no cast left) or absent (awb_correction ignored)."""
    grey = np.full((64, 64, 3), 0.5, dtype=np.float32)
    sodium = unit_luma(PALETTE["sodium"])
    lit = {"ambient_colour": sodium, "point_lights": (PointLight(0.3, 0.5, 0.2, 2.0, sodium),)}

    def red_over_blue(img: np.ndarray) -> float:
        lin = srgb_to_linear(img.astype(np.float64)).reshape(-1, 3).mean(axis=0)
        return float(lin[0] / lin[2])

    none_low, target, _ = degrade_scene(grey, np.random.default_rng(0), _plain(**lit))
    partial = _plain(awb_correction=0.8, **lit)
    part_low, _, _ = degrade_scene(grey, np.random.default_rng(0), partial)
    assert abs(red_over_blue(target) - 1.0) < 0.02
    assert red_over_blue(none_low) > 3.0
    assert 1.1 < red_over_blue(part_low) < red_over_blue(none_low) / 2


def test_noise_is_spatially_correlated_after_demosaic() -> None:
    """Catches noise added per RGB pixel (no mosaic, or no interpolation): luma noise of two
    noise draws on a flat grey frame is correlated between neighbours; the old recipe's is not."""
    grey = np.full((96, 96, 3), 0.5, dtype=np.float32)

    def neighbour_corr(a: np.ndarray, b: np.ndarray) -> float:
        d = _luma(a) - _luma(b)
        return float(np.corrcoef(d[:, :-1].ravel(), d[:, 1:].ravel())[0, 1])

    params = _plain(full_well=1000.0, read_noise=2e-3, median_luma=0.05)
    a, _, _ = degrade_scene(grey, np.random.default_rng(1), params)
    b, _, _ = degrade_scene(grey, np.random.default_rng(2), params)
    assert neighbour_corr(a, b) > 0.1
    flat = replace(sample_params(np.random.default_rng(0)), kernel_size=1, kernel=((1.0,),))
    old_a, _ = degrade(grey, np.random.default_rng(1), replace(flat, jpeg_quality=95))
    old_b, _ = degrade(grey, np.random.default_rng(2), replace(flat, jpeg_quality=95))
    assert abs(neighbour_corr(old_a, old_b)) < 0.1


@pytest.mark.parametrize("shape", [(6, 8), (7, 9), (9, 6)])
def test_demosaic_matches_plain_convolution(shape: tuple[int, int]) -> None:
    """Catches a Bayer phase or border mistake in the quarter-plane demosaic: compared with the
    textbook bilinear kernels on a reflect-padded mosaic."""
    raw = np.random.default_rng(0).random(shape).astype(np.float32)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    masks = [(yy % 2 == 0) & (xx % 2 == 0), (yy + xx) % 2 == 1, (yy % 2 == 1) & (xx % 2 == 1)]
    rb = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0
    g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4.0
    want = np.zeros((h, w, 3))
    for c, (mask, k) in enumerate(zip(masks, (rb, g, rb), strict=True)):
        p = np.pad(raw * mask, 1, mode="reflect")
        for dy in range(3):
            for dx in range(3):
                want[..., c] += k[dy, dx] * p[dy : dy + h, dx : dx + w]
    got = demosaic_bilinear(raw)
    assert np.allclose(got, want, atol=1e-6)
    assert np.array_equal(mosaic(got), raw)  # measured sites are kept as measured


@pytest.mark.parametrize("size", [5, 15, 31])
def test_fast_blur_equals_eval_blur(size: int) -> None:
    """Catches a shifted or flipped kernel in the fast-FFT blur (streaks in the wrong place)."""
    img = np.random.default_rng(size).random((37, 53, 3))
    kernel = motion_kernel(np.random.default_rng(size), size)
    assert np.allclose(blur(img.astype(np.float32), kernel), _blur(img, kernel), atol=2e-5)


def test_sampled_ranges() -> None:
    """Catches a range constant or a probability wired wrongly (e.g. sky or lamps always on)."""
    draws = [sample_scene_params(np.random.default_rng(s), 321, 481) for s in range(200)]
    assert all(MEDIAN_LUMA_RANGE[0] <= p.median_luma <= MEDIAN_LUMA_RANGE[1] for p in draws)
    assert all(KAPPA_RANGE[0] <= p.kappa <= KAPPA_RANGE[1] for p in draws)
    assert all(len(p.point_lights) <= 4 and len(p.area_lights) <= 2 for p in draws)
    assert all(len(p.emitters) <= 6 for p in draws)
    assert 0.1 <= np.mean([p.sharp for p in draws]) <= 0.3
    assert 0.2 <= np.mean([p.sky is not None for p in draws]) <= 0.5
    assert 0.45 <= np.mean([bool(p.emitters) for p in draws]) <= 0.75
    sizes = [p.kernel_size for p in draws if not p.sharp]
    assert all(5 <= s <= 31 and s % 2 == 1 for s in sizes)
    radii = [light.radius for p in draws for light in p.point_lights]
    assert min(radii) >= 0.03 and max(radii) <= 0.40


# The evaluation recipe (degradation/recipe.py) as recorded on main before this module existed.
# If this fails, the kodak24-handheld-night set's pixels changed and its numbers no longer compare
# (a new Pillow/libjpeg can do that too: then re-baseline the reported numbers, not just this).
EVAL_SHA256 = "c84d370a8189af35c3f05cee9703a55d216317df7c7e39d1516b7c8e5c3e43f4"
EVAL_MEAN = (0.15682728588581085, 0.15806055068969727, 0.15539242327213287)
EVAL_PARAMS = {
    "exposure": 0.04563135356531734,
    "gamma": 0.9002687639594837,
    "flare": 0.002943023428596105,
    "kernel_size": 31,
    "full_well": 1413.1969825069552,
    "read_noise": 0.0007453158586220388,
    "jpeg_quality": 72,
}


def test_eval_recipe_unchanged() -> None:
    """Catches any change to degrade/sample_params' draws or pixels (shared helpers included)."""
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float64)
    img = np.stack([xx / 64, yy / 48, 0.5 + 0.3 * np.sin(xx / 5)], -1) * 0.8 + 0.1
    out, params = degrade(img.astype(np.float32), np.random.default_rng(20260101))
    summary = params.summary()
    for key, value in EVAL_PARAMS.items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    assert np.allclose(out.mean(axis=(0, 1)), EVAL_MEAN, atol=1e-6)
    u8 = np.rint(out * 255).astype(np.uint8)
    assert hashlib.sha256(u8.tobytes()).hexdigest() == EVAL_SHA256
