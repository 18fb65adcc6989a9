"""The shipped darkroom-night (v2) weights really restore: synthetic Kodak crops and real dim
photos, where v2 must lift shadows further than v1 without blowing out more of the frame."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from evaluation.reference_sets import load_set
from restoration.architectures.nafnet_night_v2 import NightNAFNetV2, load_night_v2
from restoration.loading import load_restorer
from restoration.restorers import TiledRestorer
from shared.catalogue import BUNDLED_WEIGHTS, get_entry
from shared.config import Settings
from tests.conftest import shared_dir

ENTRY = get_entry("darkroom-night")
WEIGHTS = BUNDLED_WEIGHTS / ENTRY.weights_file
CPU = torch.device("cpu")
MARGIN_DB = 8.0
REAL_DIM = ["npe/NPE_71.png", "exdark/2015_02057.jpg", "mef/Lamp.png"]
"""Night photos with lamps and deep shadows (``eval/real-dim``)."""


def _data(*parts: str) -> Path:
    folder = shared_dir().joinpath(*parts)
    if not folder.exists():
        if os.environ.get("CI"):
            pytest.fail(f"evaluation data missing at {folder} (DARKROOM_SHARED_DIR)")
        pytest.skip(f"no evaluation data at {folder}; set DARKROOM_SHARED_DIR")
    return folder


@pytest.fixture(scope="module")
def restorers() -> dict[str, TiledRestorer]:
    settings = Settings()
    out = {}
    for name in ("darkroom-night", "darkroom-night-v1"):
        entry = get_entry(name)
        out[name] = load_restorer(entry, BUNDLED_WEIGHTS / entry.weights_file, CPU, settings)
    return out


def test_weights_ship_small_and_self_describing() -> None:
    assert WEIGHTS.is_file(), f"missing {WEIGHTS}"
    assert WEIGHTS.stat().st_size <= 8 * 1024 * 1024
    model = load_night_v2(WEIGHTS)
    assert sum(p.numel() for p in model.parameters()) <= 2_000_000


def _kodak_gain(restorer: TiledRestorer) -> float:
    pairs = load_set("kodak24-handheld-night", _data("eval", "kodak24").parent.parent, limit=4)
    gains = []
    for pair in pairs:
        low, clean = pair.degraded[154:346, 154:346], pair.reference[154:346, 154:346]
        gains.append(
            peak_signal_noise_ratio(clean, restorer.restore(low), data_range=1.0)
            - peak_signal_noise_ratio(clean, low, data_range=1.0)
        )
    return float(np.mean(gains))


@pytest.mark.slow
def test_shipped_weights_improve_psnr_by_a_clear_margin(
    restorers: dict[str, TiledRestorer],
) -> None:
    gain = _kodak_gain(restorers["darkroom-night"])
    assert gain >= MARGIN_DB, f"only +{gain:.2f} dB over the degraded input"


@pytest.mark.slow
def test_random_weights_of_the_same_shape_do_not(tmp_path: Path) -> None:
    from restoration.architectures.nafnet_night_v2 import save_night_v2

    torch.manual_seed(0)
    random_model = NightNAFNetV2(**load_night_v2(WEIGHTS).config())
    path = save_night_v2(random_model, tmp_path / "random.safetensors")
    restorer = load_restorer(ENTRY, path, CPU, Settings(home=tmp_path))
    assert _kodak_gain(restorer) < MARGIN_DB


def _luma(image: np.ndarray) -> np.ndarray:
    return image @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _shadows_and_clipped(photo: np.ndarray, restored: np.ndarray) -> tuple[float, float]:
    dark = _luma(photo) <= np.median(_luma(photo))
    clipped = float((restored >= 0.99).any(axis=-1).mean() - (photo >= 0.99).any(axis=-1).mean())
    return float(_luma(restored)[dark].mean()), clipped


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_DIM)
def test_real_night_photos_get_brighter_shadows_than_v1_without_more_blown_lights(
    name: str, restorers: dict[str, TiledRestorer]
) -> None:
    with Image.open(_data("eval", "real-dim") / name) as opened:
        rgb = opened.convert("RGB")
        rgb.thumbnail((640, 640))
        photo = np.asarray(rgb, dtype=np.float32) / 255.0
    v2 = _shadows_and_clipped(photo, restorers["darkroom-night"].restore(photo))
    v1 = _shadows_and_clipped(photo, restorers["darkroom-night-v1"].restore(photo))
    assert v2[0] > v1[0], f"shadows v2 {v2[0]:.3f} vs v1 {v1[0]:.3f}"
    assert v2[1] <= max(v1[1], 0.01), f"clipped+ v2 {v2[1]:.3f} vs v1 {v1[1]:.3f}"
