"""Keeping freed memory in the process, so that restoring is not mostly the kernel zeroing pages.

glibc's malloc serves every block above its mmap threshold (128 KiB, rising to at most 32 MiB)
with a fresh ``mmap`` and gives it back with ``munmap`` when freed; it also trims the top of the
heap back to the kernel. A tiled restore frees and reallocates the same large activation buffers
for every tile, so each one was faulted in again, one zeroed page at a time: on a 12-megapixel
photo the process spent more time in the kernel than in the model (issue 13: 119 s system
against 64 s user). Raising the mmap threshold to its largest value and turning trimming off
keeps those blocks on the heap, where the next tile reuses them.

``mallopt`` can be called any time: it changes where later blocks come from, so calling it when
the first model loads (``restoration.loading.load_restorer``) comes before the first large
activation. The price is that a process keeps its peak heap until it exits, which is what a
worker that restores one photo after another wants anyway.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
from collections.abc import Callable
from typing import cast

from shared.config import Settings

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter numbers, from glibc's ``malloc.h``."""

KEEP = 2**31 - 1
"""The mmap threshold: the largest value ``mallopt``'s ``int`` takes, so only blocks above
2 GiB still get their own mapping."""
NEVER_TRIM = -1
"""The trim threshold: -1 turns trimming off (mallopt(3)). 2 GiB was not enough: after a batch
of 1024-px tiles more than 2 GiB lies free at the top of the heap, and trimming it made the
next batch fault every page back in (1,260 ``brk`` calls and 1.4 million page faults for three
6-megapixel photos; none with trimming off)."""


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None where there is none (macOS, Windows, musl's no-op stub is
    still found and answers 0, which :func:`keep_freed_memory` reports)."""
    if not sys.platform.startswith("linux"):
        return None
    function = getattr(ctypes.CDLL(None), "mallopt", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_int]
        function.restype = ctypes.c_int
    return cast("Callable[[int, int], int] | None", function)


@functools.cache
def keep_freed_memory() -> bool:
    """Raise malloc's mmap and trim thresholds once per process; True when malloc took both."""
    mallopt = _mallopt()
    if mallopt is None:
        log.info("malloc thresholds left as they are: no glibc mallopt on this platform")
        return False
    taken = bool(mallopt(M_MMAP_THRESHOLD, KEEP)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
    if not taken:
        log.warning("malloc refused the raised mmap/trim thresholds; restoring on CPU is slower")
    return taken


def configure(settings: Settings) -> bool:
    """Apply ``settings.cpu_allocator`` to this process; True when freed memory is kept."""
    if settings.cpu_allocator == "system":
        return False
    return keep_freed_memory()
