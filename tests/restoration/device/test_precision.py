"""Reduced precision against float32, through the path jobs take (``load_restorer``).

On CUDA this is the worker's default (``DARKROOM_PRECISION=auto``: bf16, else fp16); here it
runs on whatever device the machine has, forcing bf16 (and fp16 on CUDA), so the autocast
path is exercised on CPU-only CI as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from benchmarks.gpu_memory import overflowing
from evaluation.reference_sets import load_set
from restoration.device.precision import autocast_dtype, finite_or_float32, native_bf16
from restoration.loading import load_restorer
from restoration.restorers import half_dtype
from shared.catalogue import BUNDLED_WEIGHTS, get_entry
from shared.config import Settings
from tests.conftest import shared_dir

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
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert half_dtype(night, torch.device("cuda")) is torch.bfloat16
    assert half_dtype(night, torch.device("cuda"), "fp32") is None


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 5), torch.float16), ((7, 0), torch.float16), ((8, 0), torch.bfloat16)],
    ids=["T4", "V100", "A100"],
)
def test_gpus_without_bf16_units_get_fp16_not_emulated_bf16(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: torch.dtype
) -> None:
    """``torch.cuda.is_bf16_supported()`` says yes on a T4 or V100 (emulation counts): the
    choice must follow the job's device's own capability."""
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: including_emulation or capability >= (8, 0),
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    device = torch.device("cuda", 1)
    assert autocast_dtype(device, supports_half=True, supports_bfloat16=True) == expected
    assert native_bf16(device) == (expected == torch.bfloat16)


def test_a_pass_that_overflows_in_fp16_runs_again_in_float32(
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = overflowing(torch.device("cpu"))
    x = torch.full((1, 3, 4, 4), 0.9)

    def run(dtype: torch.dtype | None) -> torch.Tensor:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            return module(x).float()

    assert not torch.isfinite(run(torch.float16)).all()  # the overflow is real
    with caplog.at_level("WARNING", logger="restoration.device.precision"):
        out = finite_or_float32(run, torch.float16, "overflowing")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, run(None))
    assert any("non-finite" in r.getMessage() for r in caplog.records)
    assert finite_or_float32(run, None, "overflowing") is not None


def test_spandrel_models_see_the_overflow_their_clamp_would_hide(tmp_path: Path) -> None:
    """spandrel's call clamps to [0, 1], which turns inf into white; the restorer's check looks
    at the network's own output (a forward hook). The network here overflows to inf under
    reduced precision only, as an fp16 activation past 65504 does."""
    from spandrel.architectures.DnCNN import DnCNN

    from restoration.spandrel_models import load_spandrel

    torch.manual_seed(0)
    path = tmp_path / "dncnn.pth"
    torch.save(DnCNN(in_nc=3, out_nc=3, nc=8, nb=20, act_mode="R").state_dict(), path)
    loaded = load_spandrel(path, precision="fp16")
    loaded.supports_half = True  # spandrel says no for DnCNN; the check is what is tested
    network = loaded.descriptor.model
    real = network.forward

    def overflowing(x: torch.Tensor) -> torch.Tensor:
        out = real(x)
        return out * float("inf") if torch.is_autocast_enabled("cpu") else out

    network.forward = overflowing  # type: ignore[method-assign]
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = loaded(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, real(x).clamp(0, 1))
