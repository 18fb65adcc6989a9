"""Malloc set up for restoring: large activation buffers stay on the heap instead of each getting
its own mapping that the kernel zeroes again on every tile (``restoration.device.allocator``).

Each case runs in a fresh interpreter, because malloc's thresholds are process-wide and cannot
be put back; glibc's ``mallinfo2`` says how many bytes sit in blocks of their own mapping while a
256 MiB tensor is held, and how large the heap stays once two 1.1 GiB blocks next to each other
are freed (more than 2 GiB free at its top: what a batch of 1024-px tiles leaves behind).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from shared.config import Settings

pytestmark = [
    pytest.mark.slow,  # each case starts an interpreter that imports torch
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="mallopt is glibc's; elsewhere a no-op"
    ),
]

HELD_BYTES = 256 * 1024 * 1024
FREED_BYTES = 2 * 1100 * 1024 * 1024

PROBE = """
import ctypes, json, torch
from shared.config import Settings
from restoration.device import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
taken = allocator.configure(Settings(cpu_allocator="{choice}"))
held = torch.ones({floats})
mapped = libc.mallinfo2().hblkhd
# Two neighbours straight from malloc (a tensor would put its own small blocks between them),
# never touched: address space only. Freed, they leave more than 2 GiB free at the heap's top.
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
first, second = libc.malloc({half}), libc.malloc({half})
libc.free(second)
libc.free(first)
print(json.dumps({{"taken": taken, "mapped": mapped, "heap": libc.mallinfo2().arena}}))
"""


def probe(choice: str) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "LD_PRELOAD"))}
    code = PROBE.format(choice=choice, floats=HELD_BYTES // 4, half=FREED_BYTES // 2)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_keep_puts_large_buffers_on_the_heap() -> None:
    result = probe("keep")
    assert result["taken"]
    assert result["mapped"] < HELD_BYTES


def test_keep_never_trims_the_heap_even_past_2_gib() -> None:
    assert probe("keep")["heap"] >= FREED_BYTES


def test_system_leaves_mallocs_own_mapping_of_large_buffers() -> None:
    result = probe("system")
    assert not result["taken"]
    assert result["mapped"] >= HELD_BYTES
    assert result["heap"] < FREED_BYTES


def test_keep_is_the_default() -> None:
    assert Settings().cpu_allocator == "keep"
