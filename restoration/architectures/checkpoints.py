"""Reading published state-dict files into Darkroom's own re-implementations.

The published lightweight models (Zero-DCE, Zero-DCE++, SCI, IAT) ship plain state dicts saved
on CUDA devices, some in the pre-1.6 pickle format. They are loaded unchanged: ``weights_only``
because the files come from outside, ``map_location="cpu"`` because most hold CUDA tensors, and
strictly, so a file of another layout is refused instead of leaving layers at their
initialisation.

Their weights are also *flushed*: weight decay left many of them subnormal (Zero-DCE's and
IAT's files hold values near 1e-41), and a CPU multiplies subnormals tens of times slower than
normal floats: Zero-DCE took 26 s for a 512 x 512 photo on one core, 0.8 s with them set to
zero. They are below 1.2e-38, so zero changes no output by anything measurable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of the file at ``path``; ``ValueError`` naming ``what`` was expected for a
    file that is not a state dict (``OSError`` for a missing or unreadable file, as usual)."""
    try:
        loaded = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # the unpickler fails with many types (KeyError on a text file)
        raise ValueError(
            f"not a {what} checkpoint: {Path(path).name} could not be read "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise ValueError(f"not a {what} checkpoint: {Path(path).name} holds no plain state dict")
    return {key: flush_subnormals(value) for key, value in loaded.items()}


def flush_subnormals(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` with its subnormal values set to zero (floating-point tensors only)."""
    if not tensor.is_floating_point():
        return tensor
    tiny = torch.finfo(tensor.dtype).tiny
    return torch.where(tensor.abs() < tiny, torch.zeros_like(tensor), tensor)


def load_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | Path, what: str
) -> None:
    """Load every tensor of ``state_dict`` into ``model``, with nothing missing or left over."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[:3]
        raise ValueError(
            f"not a {what} checkpoint: {Path(path).name} does not match the layout "
            f"({' '.join(line.strip() for line in first)[:300]})"
        ) from exc
