"""Which reduced precision a model runs in: one rule for Darkroom's own models and spandrel's.

Its own module because both ``workers.restorers`` (Darkroom's networks) and
``workers.spandrel_models`` need it, and the night models must not import spandrel to load
(``workers.padding`` says why).
"""

from __future__ import annotations

import torch

__all__ = ["autocast_dtype"]


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
    if supports_bfloat16 and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if supports_half:
        return torch.float16
    return None
