"""The one check to run the first time a GPU is at hand: every CUDA path Darkroom has, and each
defect issue #15 found by reading them, measured in one run with one report.

    scripts/gpu-check.sh [--device cuda|cpu] [--quick] [--out gpu-check.json]

Each check prints a line and adds a record to the report (a JSON list): the defect it covers,
``ok`` (whether what it measured is what the fixed code must give), and its figures. On a CPU
(``--device cpu --quick``, which the test suite runs so the script cannot rot) the checks run
the same code paths on the CPU with simulated out-of-memory errors; figures that only a GPU has
(memory allocated, bf16 units, cuDNN plans) say ``"cuda only"``. The exit status is 1 when any
check is not ok. Figures go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from benchmarks.gpu_common import Check
from benchmarks.gpu_memory import (
    check_bf16,
    check_exposure_sums,
    check_finite,
    check_gpus,
    check_halving,
    check_oom_release,
    check_warm_up_oom,
)
from benchmarks.gpu_passes import (
    check_compile_stall,
    check_large_output,
    check_merged_passes,
    check_model_speeds,
    check_precisions,
    check_second_thread,
)
from restoration.device.placement import pick_device

CHECKS: list[Callable[[torch.device, bool], Check]] = [
    check_compile_stall,
    check_merged_passes,
    check_large_output,
    check_oom_release,
    check_bf16,
    check_gpus,
    check_finite,
    check_warm_up_oom,
    check_halving,
    check_exposure_sums,
    check_second_thread,
    check_precisions,
    check_model_speeds,
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=pick_device().type)
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite's run)")
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        # The comparisons need float32 to be float32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    records = []
    for check in CHECKS:
        start = time.perf_counter()
        try:
            result = check(device, args.quick)
        except Exception as exc:
            result = Check(check.__name__, "?", False, {"error": f"{type(exc).__name__}: {exc}"})
        result.figures["check seconds"] = round(time.perf_counter() - start, 2)
        records.append(asdict(result))
        print(
            f"{'ok  ' if result.ok else 'FAIL'} [{result.defect}] {result.name}: {result.figures}"
        )
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "quick": args.quick,
        "checks": records,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out}")
    return 0 if all(record["ok"] for record in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
