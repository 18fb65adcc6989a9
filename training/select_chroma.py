"""Choose the night model v2's chroma clean-up (``restoration.chroma_cleanup``) on held-out photos.

Usage::

    .venv/bin/python -m training.select_chroma [--config training/night.yaml] [--weights PATH]

The held-out photos and their degradation are training's own (``training.train.load_data``:
every 16th BSDS500 ``test`` photo, fixed seed), so nothing here sees an evaluation set. Each
candidate window and regulariser is scored by PSNR against the clean photo and by the chroma
error the filter exists for: the mean absolute error of the colour-difference planes after a
4x4 box average (blotches, not grain). The rule: among the candidates within 0.05 dB of the
best PSNR, the lowest chroma error, where errors within 0.01 of it count as equal and the
smallest regulariser among those wins (it keeps colour edges sharpest: at 1e-2 the colour of a
wall bleeds 3 px across an edge of 0.3 in luma, ``tests/restoration/test_chroma_cleanup.py``). The
scores are written to ``training/runs/chroma-cleanup-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from restoration.architectures.nafnet_night_v2 import load_night_v2
from restoration.chroma_cleanup import ChromaCleanup, colour_difference
from training.schedule import psnr
from training.train import REPO_ROOT, load_config, load_data

CANDIDATES = [
    ChromaCleanup(kernel=kernel, eps=eps, subsample=2)
    for kernel in (9, 17, 33)
    for eps in (1e-4, 1e-3, 1e-2)
]
PSNR_SLACK_DB = 0.05
BLOTCH_TIE = 0.01


def blotch_error(pred: Tensor, target: Tensor) -> float:
    """Mean |error| of (R - Y, B - Y) after a 4x4 box average, x255, of two [0, 1] images."""
    pooled = [F.avg_pool2d(colour_difference(image)[1], 4) for image in (pred, target)]
    return float((pooled[0] - pooled[1]).abs().mean()) * 255.0


def score(
    outputs: list[tuple[Tensor, Tensor, Tensor]], cleanup: ChromaCleanup | None
) -> dict[str, Any]:
    psnrs, blotches = [], []
    for restored, log_gain, target in outputs:
        final = restored if cleanup is None else cleanup(restored, log_gain)
        psnrs.append(psnr(final, target))
        blotches.append(blotch_error(final.clamp(0, 1), target))
    return {
        "kernel": None if cleanup is None else cleanup.kernel,
        "eps": None if cleanup is None else cleanup.eps,
        "psnr": sum(psnrs) / len(psnrs),
        "blotch_error": sum(blotches) / len(blotches),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="training/night.yaml")
    ap.add_argument("--weights", default=None, help="default: the config's output.weights")
    args = ap.parse_args(argv)
    args.steps = args.time_budget = args.lr = None
    cfg = load_config(args)
    weights = Path(args.weights or REPO_ROOT / cfg["output"]["weights"])
    model = load_night_v2(weights)
    _, pairs = load_data(cfg)
    outputs = []
    with torch.inference_mode():
        for low, target in pairs:
            exposed = model.expose(low)
            outputs.append((model(exposed), model.log_gain_of(exposed), target))
    rows = [score(outputs, None)] + [score(outputs, c) for c in CANDIDATES]
    best_psnr = max(row["psnr"] for row in rows)
    eligible = [r for r in rows[1:] if r["psnr"] >= best_psnr - PSNR_SLACK_DB]
    chosen = None
    if eligible:
        lowest = min(r["blotch_error"] for r in eligible)
        tied = [r for r in eligible if r["blotch_error"] <= lowest + BLOTCH_TIE]
        chosen = min(tied, key=lambda r: (r["eps"], r["blotch_error"]))
    for row in rows:
        mark = " <- chosen" if row is chosen else ""
        print(
            f"kernel {row['kernel']!s:>4} eps {row['eps']!s:>7}: {row['psnr']:.3f} dB, "
            f"blotch error {row['blotch_error']:.3f}{mark}",
            flush=True,
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log = {
        "weights": str(weights.relative_to(REPO_ROOT)),
        "held_out_photos": len(pairs),
        "rule": (
            f"within {PSNR_SLACK_DB} dB of the best PSNR, the lowest blotch error (ties within "
            f"{BLOTCH_TIE}: the smallest eps)"
        ),
        "rows": rows,
        "chosen": chosen,
    }
    out = REPO_ROOT / cfg["output"]["log_dir"] / f"chroma-cleanup-{stamp}.json"
    out.write_text(json.dumps(log, indent=1))
    print(f"written {out.relative_to(REPO_ROOT)}", flush=True)
    return log


if __name__ == "__main__":
    main()
