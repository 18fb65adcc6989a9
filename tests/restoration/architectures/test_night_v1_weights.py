"""The shipped darkroom-night-v1 weights really restore: measured on degraded Kodak crops."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from evaluation.reference_sets import KODAK_SEED, load_set
from restoration.architectures.nafnet_night import NightNAFNet, load_night
from restoration.restorers import TiledRestorer
from restoration.tiling import SizeRequirements, TileConfig
from shared.catalogue import BUNDLED_WEIGHTS, get_entry
from tests.conftest import shared_dir

ENTRY = get_entry("darkroom-night-v1")
WEIGHTS = BUNDLED_WEIGHTS / ENTRY.weights_file
MARGIN_DB = 8.0
"""The issue's target on the whole set; a fresh NightNAFNet (its gain head starts at x3) gets ~6."""


@pytest.fixture(scope="module")
def crops() -> list[tuple[np.ndarray, np.ndarray]]:
    folder = shared_dir()
    if not (folder / "eval" / "kodak24").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"evaluation data missing at {folder} (DARKROOM_SHARED_DIR)")
        pytest.skip(f"no evaluation data at {folder}; set DARKROOM_SHARED_DIR")
    pairs = load_set("kodak24-handheld-night", folder, limit=6)
    assert KODAK_SEED  # the set is the fixed-seed one the model card reports
    # 192x192 centre crops keep the test fast on a CPU.
    return [(p.degraded[154:346, 154:346], p.reference[154:346, 154:346]) for p in pairs]


def _gain(model: torch.nn.Module, crops: list[tuple[np.ndarray, np.ndarray]]) -> float:
    restorer = TiledRestorer(
        "darkroom-night",
        lambda batch, task: model(batch),
        torch.device("cpu"),
        size=SizeRequirements(multiple_of=model.size_multiple),
        scale_for=lambda task: 1,
        tiles=TileConfig(tile=ENTRY.tile, overlap=ENTRY.overlap),
        nbytes=0,
    )
    gains = [
        peak_signal_noise_ratio(clean, restorer.restore(degraded), data_range=1.0)
        - peak_signal_noise_ratio(clean, degraded, data_range=1.0)
        for degraded, clean in crops
    ]
    return float(np.mean(gains))


def test_weights_ship_small_and_self_describing() -> None:
    assert WEIGHTS.is_file(), f"missing {WEIGHTS}"
    assert WEIGHTS.stat().st_size <= 8 * 1024 * 1024
    model = load_night(Path(WEIGHTS))
    assert sum(p.numel() for p in model.parameters()) <= 2_000_000


@pytest.mark.slow
def test_shipped_weights_improve_psnr_by_a_clear_margin(crops) -> None:  # type: ignore[no-untyped-def]
    gain = _gain(load_night(WEIGHTS), crops)
    assert gain >= MARGIN_DB, f"only +{gain:.2f} dB over the degraded input"


@pytest.mark.slow
def test_random_weights_of_the_same_shape_do_not(crops) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    random_model = NightNAFNet(**load_night(WEIGHTS).config()).eval()
    assert _gain(random_model, crops) < MARGIN_DB


@pytest.mark.slow
def test_tiles_share_one_exposure_so_tiling_leaves_no_patchwork(crops) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from restoration.loading import load_restorer
    from shared.config import Settings

    degraded = np.concatenate(
        [
            np.concatenate([a, b], axis=1)
            for (a, _), (b, _) in zip(crops[0:2], crops[2:4], strict=True)
        ],
        axis=0,
    )  # 384 x 384
    cpu = torch.device("cpu")
    settings = Settings(tile_batch_size=4)
    whole = load_restorer(dataclasses.replace(ENTRY, tile=0), WEIGHTS, cpu, settings)
    tiled = load_restorer(dataclasses.replace(ENTRY, tile=128, overlap=32), WEIGHTS, cpu, settings)
    reference = whole.restore(degraded)
    shared_gain = np.abs(tiled.restore(degraded) - reference).mean()

    model = load_night(WEIGHTS)
    per_tile = TiledRestorer(
        "per-tile-gain",
        lambda batch, task: model(batch),
        cpu,
        size=SizeRequirements(multiple_of=model.size_multiple),
        scale_for=lambda task: 1,
        tiles=TileConfig(tile=128, overlap=32),
        nbytes=0,
    )
    own_gain = np.abs(per_tile.restore(degraded) - reference).mean()
    # Measured with the shipped weights at these deliberately small tiles: 0.026 with the shared
    # exposure, 0.058 with one per tile. What remains comes from the blocks' channel attention,
    # which pools per tile; the catalogue's 1024-px tiles see far more of the photo.
    assert shared_gain < 0.035, shared_gain
    assert shared_gain < own_gain * 0.6, (shared_gain, own_gain)
