"""Which device a model runs on: the one rule for ``auto`` (the first CUDA device when there is
one, else the CPU), for the workers, training, the CLI and the benchmarks alike."""

from __future__ import annotations

import torch

AUTO = "auto"


def pick_device(setting: str = AUTO) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; anything else as torch names it."""
    if setting == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)
