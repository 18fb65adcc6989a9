"""Which reduced precision a model runs in: one rule for Darkroom's own models and spandrel's.

Its own module because both ``restoration.restorers`` (Darkroom's networks) and
``restoration.spandrel_models`` need it, and the night models must not import spandrel to load
(``restoration.padding`` says why).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["autocast", "autocast_dtype", "finite_or_float32", "native_bf16"]

log = logging.getLogger(__name__)

NATIVE_BF16_CAPABILITY = 8
"""CUDA compute capability (major) from which GPUs have bf16 units (Ampere, sm_80)."""


def native_bf16(device: torch.device) -> bool:
    """Whether the CUDA ``device`` computes bf16 in hardware. ``torch.cuda.is_bf16_supported()``
    alone counts emulation (a T4 or V100 says yes, then runs bf16 several times slower than fp16)
    and asks about the current device rather than the job's."""
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= NATIVE_BF16_CAPABILITY


def autocast(dtype: torch.dtype | None, device: torch.device) -> AbstractContextManager[object]:
    """Autocast to ``dtype`` (what :func:`autocast_dtype` chose), or nothing for float32."""
    return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()


def autocast_dtype(
    device: torch.device | str,
    *,
    supports_half: bool,
    supports_bfloat16: bool,
    precision: str = "auto",
) -> torch.dtype | None:
    """The reduced precision to autocast to on ``device``, or None for float32.

    ``auto``: only CUDA gains from it. bfloat16 comes first: it keeps float32's range, so
    models whose activations overflow fp16 (which is why spandrel leaves ``supports_half`` off
    for most transformers) still work; fp16 is the fallback for GPUs without bf16. ``bf16`` or
    ``fp16`` ask for that precision on any device (CPUs with bf16 units gain from it too), and
    still get float32 for a model that does not support it: a wrong answer is worse than a
    slow one.
    """
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16 if supports_bfloat16 else None
    if precision == "fp16":
        return torch.float16 if supports_half else None
    if device.type != "cuda":
        return None
    if supports_bfloat16 and native_bf16(device):
        return torch.bfloat16
    if supports_half:
        return torch.float16
    return None


def finite_or_float32(
    run: Callable[[torch.dtype | None], torch.Tensor],
    dtype: torch.dtype | None,
    name: str,
    finite: Callable[[torch.Tensor], bool] | None = None,
) -> torch.Tensor:
    """``run(dtype)``, run again in float32 when reduced precision made any value infinite or
    NaN. An fp16 overflow (its largest value is 65504) would otherwise come out as black or
    white pixels, which clamping hides; costs one check per pass. ``finite`` replaces the check
    of the output where the output is clamped before it is seen (spandrel's call)."""
    output = run(dtype)
    if dtype is None:
        return output
    if finite(output) if finite is not None else bool(torch.isfinite(output).all()):
        return output
    log.warning(
        "model %s gave non-finite values in %s; that pass runs again in float32", name, dtype
    )
    return run(None)
