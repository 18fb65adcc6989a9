"""What every check of ``benchmarks.gpu_check`` shares: its record and the device readings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

CUDA_ONLY = "cuda only"


@dataclass
class Check:
    name: str
    defect: str
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def allocated(device: torch.device) -> int | str:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else CUDA_ONLY
