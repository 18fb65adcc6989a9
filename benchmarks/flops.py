"""Achieved TFLOP/s, and the share of the GPU's peak it is.

A model's FLOPs are counted once, by ``torch.utils.flop_counter.FlopCounterMode`` on one
eager pass: the matrix multiplications and convolutions, the work tensor cores do (elementwise
operations are not counted, as usual for model FLOPs). Achieved TFLOP/s is then that count
times the measured passes per second, whatever ran them (compiled, channels-last).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

PEAK_TFLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H100", "PCIe"), 756.0),
    (("H100", "NVL"), 835.0),
    (("H100",), 989.4),
    (("H200", "NVL"), 835.0),
    (("H200",), 989.4),
    (("GH200",), 989.4),
    (("A100",), 312.0),
    (("L40S",), 362.0),
    (("L40",), 181.0),
    (("L4",), 121.0),
    (("A10",), 125.0),
)
"""Dense bf16/fp16 tensor-core TFLOP/s, from NVIDIA's datasheets (which print twice these,
"with sparsity"): H100 SXM 989.4, PCIe 756, NVL 835; H200 SXM as H100 SXM, H200 NVL 835;
A100 (SXM and PCIe) 312; L40S 362; L40 181; L4 121; A10 125. Keyed by the words of
``torch.cuda.get_device_name()`` (``NVIDIA H100 80GB HBM3`` is the SXM card); the first entry
whose words all appear wins, so the specific variants come first."""


FULL_SMS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("H100", "PCIe"), 114),
    (("H100",), 132),
    (("H200",), 132),
    (("A100",), 108),
    (("A30",), 56),
)
"""Multiprocessors of the whole GPU, for the GPUs that can be split into MIG slices."""


def peak_tflops(device: torch.device, given: float | None = None) -> float | None:
    """The device's dense bf16/fp16 peak: ``given`` (``--peak-tflops``), else the table's
    figure for a known GPU, else None (a CPU, or a GPU not in the table)."""
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    words = set(re.split(r"[\s\-_]+", name))
    peak = next((peak for key, peak in PEAK_TFLOPS if words.issuperset(key)), None)
    if peak is None or "MIG" not in words:
        return peak
    # A MIG slice has a share of the GPU's multiprocessors, and that share of its peak.
    full = next((sms for key, sms in FULL_SMS if words.issuperset(key)), None)
    if full is None:
        return None
    return peak * torch.cuda.get_device_properties(device).multi_processor_count / full


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs of ``run()``. Compiled graphs run eager for the count: their kernels bypass the
    dispatcher the counter listens on."""
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def share_of_peak(tflops_per_s: float, peak: float | None) -> str:
    """``"6.4% of 989 peak"``, or an empty string when the peak is not known."""
    return f"{tflops_per_s / peak:.1%} of {peak:g} peak" if peak else ""
