"""Telling an out-of-memory failure from any other, whichever layer raised it.

The tiled path halves its tile when the device runs out of memory (``restoration.tiling``), and the
compiled path must not take such a failure for a compiler bug (``restoration.device.acceleration``).
Not every allocation failure is a ``torch.OutOfMemoryError``: cuBLAS and cuDNN report theirs as a
plain ``RuntimeError`` naming their status code, and torch.compile wraps errors raised while it
compiles or autotunes (``BackendCompilerFailed``, ...) with the original as the cause.
"""

from __future__ import annotations

import torch

__all__ = ["is_out_of_memory"]

ALLOCATION_FAILURES = (
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    "CUDA out of memory",
    "CUDA error: out of memory",
)
"""What the CUDA libraries' allocation failures say (status codes, which are stable names)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is the device running out of memory."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, torch.OutOfMemoryError):
            return True
        if isinstance(current, RuntimeError) and any(
            marker in str(current) for marker in ALLOCATION_FAILURES
        ):
            return True
        current = current.__cause__ or current.__context__
    return False
