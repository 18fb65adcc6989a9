"""Reduced precision against float32, through the path jobs take (``load_restorer``).

On CUDA this is the worker's default (``DARKROOM_PRECISION=auto``: bf16, else fp16); here it
runs on whatever device the machine has, forcing bf16 (and fp16 on CUDA), so the autocast
path is exercised on CPU-only CI as well.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from shared.catalogue import BUNDLED_WEIGHTS, get_entry
from shared.config import Settings
from tests.conftest import shared_dir
from workers.evaluation import load_set
from workers.restorers import half_dtype, load_restorer

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
PRECISIONS = ["bf16", "fp16"] if DEVICE.type == "cuda" else ["bf16"]
MIN_AGREEMENT_DB = 35.0
"""Reduced-precision output against float32 output; measured: 58 and 61 dB for bf16 on CPU."""
MAX_QUALITY_LOSS_DB = 0.2
"""PSNR against the clean photo may drop this much at most."""


@pytest.fixture(scope="module")
def photos() -> list[tuple[np.ndarray, np.ndarray]]:
    folder = shared_dir()
    if not (folder / "eval" / "kodak24").is_dir():
        pytest.skip(f"no evaluation data at {folder}; set DARKROOM_SHARED_DIR")
    pairs = load_set("kodak24-handheld-night", folder, limit=2)
    return [(p.degraded[100:356, 100:356], p.reference[100:356, 100:356]) for p in pairs]


def _restore(precision: str, photos: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    entry = get_entry("darkroom-night")
    settings = Settings(precision=precision, device=DEVICE.type)
    restorer = load_restorer(entry, BUNDLED_WEIGHTS / entry.weights_file, DEVICE, settings)
    return [restorer.restore(degraded) for degraded, _ in photos]


@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_reduced_precision_matches_float32_within_tolerance(
    precision: str, photos: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    full = _restore("fp32", photos)
    reduced = _restore(precision, photos)
    for (_, clean), a, b in zip(photos, full, reduced, strict=True):
        assert not np.array_equal(a, b), "autocast did not run: outputs are bit-identical"
        assert peak_signal_noise_ratio(a, b, data_range=1.0) >= MIN_AGREEMENT_DB
        loss = peak_signal_noise_ratio(clean, a, data_range=1.0) - peak_signal_noise_ratio(
            clean, b, data_range=1.0
        )
        assert loss <= MAX_QUALITY_LOSS_DB, f"{precision} loses {loss:.2f} dB"


def test_auto_is_float32_on_cpu_and_half_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    night = get_entry("darkroom-night")  # lists fp32 and bf16
    assert half_dtype(night, torch.device("cpu")) is None
    assert half_dtype(night, torch.device("cpu"), "bf16") is torch.bfloat16
    assert half_dtype(night, torch.device("cpu"), "fp16") is None  # not listed: stays fp32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert half_dtype(night, torch.device("cuda")) is torch.bfloat16
    assert half_dtype(night, torch.device("cuda"), "fp32") is None
