"""Train Darkroom's night model (NightNAFNet v2) on BSDS500 with on-the-fly night-scene degradation.

Usage::

    .venv/bin/python -m training.train --config training/night.yaml [--device cpu|cuda]
        [--steps N] [--time-budget MIN] [--lr LR] [--resume PATH] [--out PATH]

Design choices, and why:

* **Resume from the committed weights** (``--resume``, default ``output.weights`` if it exists,
  else ``init.v1_weights``): CPU time is scarce, so every run continues the last one. A v1 file
  starts the U-Net (``restoration.architectures.nafnet_night_v2.from_v1``); the optimiser is
  rebuilt.
* **Every run is logged** in ``output.log_dir`` under its own name (the weights' stem and the
  start time), with what it resumed from and the seed it drew from, so the runs that made a
  shipped file can be read back in order.
* **Model selection on held-out photos**: BSDS500 ``train`` and ``test`` are both trained on,
  except every ``data.holdout_every``-th ``test`` photo, which is degraded once with a fixed seed
  and scored; the weights are written only when that score improves.
* **Three losses**: Charbonnier on the restored patches; L1 of the exposure stage alone
  against the target at 1/4 size, so the exposure network learns brightness directly instead
  of only through the U-Net; and (from run 2) ``train.chroma_loss`` times a Charbonnier on the
  colour-difference planes at half size, because chroma mottling in lifted shadows is what
  real night photos showed after run 1.
* **Degradation on the fly in the main process** (``training.data``): on a 2-core CPU a loader
  worker process takes a core from the two OpenMP threads, which then stall at every barrier;
  the :class:`~training.schedule.ThreadTuner` handles the same stall when other work runs.
* **Time-aware cosine schedule**: the learning rate follows a cosine over
  ``max(step / steps, elapsed / time_budget)``, so a run cut by its budget still fully decays;
  time the process spent stopped (``kill -STOP``, to benchmark a shared machine) is not counted.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from torch import Tensor

from restoration.architectures.local_exposure import apply_exposure
from restoration.architectures.nafnet_night_v2 import (
    NightNAFNetV2,
    from_v1,
    load_night_v2,
    save_night_v2,
)
from restoration.device.placement import AUTO, pick_device
from shared.config import get_settings
from training.data import (
    SMALL_FACTOR,
    Photo,
    SceneBatches,
    build_val_set,
    load_images,
    split_holdout,
)
from training.schedule import (
    ThreadTuner,
    charbonnier,
    chroma_loss,
    lr_at,
    psnr,
    schedule_progress,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PAUSE_S = 60.0
"""Longest step the time budget counts in full (see :func:`train`)."""


def shared_dir() -> Path:
    """Where the shared data lives: the settings' ``shared_dir`` (``DARKROOM_SHARED_DIR``), the
    one place every tool reads it from."""
    return get_settings().shared_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="training/night.yaml")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: auto")
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument("--time-budget", type=float, default=None, help="minutes; override")
    ap.add_argument("--lr", type=float, default=None, help="override train.lr")
    ap.add_argument("--resume", default=None, help="weights to start from (v1 or v2 file)")
    ap.add_argument("--out", default=None, help="override output.weights")
    return ap.parse_args(argv)


def load_config(args: argparse.Namespace) -> dict[str, Any]:
    """The YAML config with the command line's overrides, so the run log records what ran."""
    cfg: dict[str, Any] = yaml.safe_load(Path(args.config).read_text())
    for key, value in (("steps", args.steps), ("time_budget_minutes", args.time_budget)):
        if value is not None:
            cfg["train"][key] = value
    if args.lr is not None:
        cfg["train"]["lr"] = args.lr
    return cfg


@dataclass
class Run:
    """What the phases of one training share."""

    cfg: dict[str, Any]
    device: torch.device
    model: NightNAFNetV2
    opt: torch.optim.Optimizer
    out_path: Path
    log_path: Path
    log: dict[str, Any]
    best: float = float("-inf")
    t0: float = field(default_factory=time.time)


def start_model(cfg: dict[str, Any], resume: str | None, out: Path) -> tuple[NightNAFNetV2, str]:
    """The network to train and the file it started from."""
    source = (
        Path(resume) if resume else out if out.exists() else REPO_ROOT / cfg["init"]["v1_weights"]
    )
    if not source.exists():
        model = NightNAFNetV2(**cfg["model"])
        return model, "random"
    try:
        model = load_night_v2(source)
    except ValueError:  # a v1 file: take its U-Net
        model = NightNAFNetV2(**cfg["model"])
        new = from_v1(load_file(str(source)), model)
        print(f"started from v1 {source}; new: {len(new)} tensors", flush=True)
    return model, str(source.relative_to(REPO_ROOT) if source.is_relative_to(REPO_ROOT) else source)


def start_run(args: argparse.Namespace, cfg: dict[str, Any], device: torch.device) -> Run:
    out_path = Path(args.out) if args.out else REPO_ROOT / cfg["output"]["weights"]
    model, source = start_model(cfg, args.resume, out_path)
    model = model.to(device).train()
    tcfg = cfg["train"]
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=float(tcfg["lr"]),
        betas=(float(tcfg["betas"][0]), float(tcfg["betas"][1])),
        weight_decay=float(tcfg["weight_decay"]),
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = REPO_ROOT / cfg["output"]["log_dir"]
    run_dir.mkdir(parents=True, exist_ok=True)
    log: dict[str, Any] = {
        "name": cfg["name"],
        "started": stamp,
        "config": cfg,
        "device": str(device),
        "params": sum(p.numel() for p in model.parameters()),
        "resumed_from": source,
        "weights": str(out_path),
        "loss": [],
        "val": [],
    }
    print(
        f"NightNAFNetV2 {log['params'] / 1e6:.3f} M params on {device}, from {source}", flush=True
    )
    return Run(cfg, device, model, opt, out_path, run_dir / f"{out_path.stem}-{stamp}.json", log)


def load_data(cfg: dict[str, Any]) -> tuple[list[np.ndarray], list[tuple[Tensor, Tensor]]]:
    """Training photos (``train`` and most of ``test``) and the held-out validation pairs."""
    shared, dcfg = shared_dir(), cfg["data"]
    train = [img for folder in dcfg["train"] for img in load_images(shared / folder)]
    kept, held = split_holdout(
        load_images(shared / dcfg["holdout_from"]), int(dcfg["holdout_every"])
    )
    vcfg = cfg["val"]
    val = build_val_set(held, int(vcfg["seed"]), float(cfg["train"]["global_recipe_share"]))
    print(f"{len(train) + len(kept)} training photos, {len(held)} held out", flush=True)
    return train + kept, val


def forward_batch(
    model: NightNAFNetV2, photos: list[Photo], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """(restored patches, their targets, the exposure stage's own loss) for one batch."""
    exposed, aux = [], []
    for photo in photos:
        low = photo.low.to(device)
        maps = model.exposure(low)
        for i, box in enumerate(photo.boxes):
            patch = photo.low_patches[i : i + 1].to(device)
            full = (low.shape[-2], low.shape[-1])
            exposed.append(model.expose_crop(patch, maps, full, box))
        small = F.avg_pool2d(low, SMALL_FACTOR)
        grid = F.interpolate(
            maps.grid(), size=small.shape[-2:], mode="bilinear", align_corners=False
        )
        small_exposed, _ = apply_exposure(small, grid, maps.white_balance)
        aux.append(F.l1_loss(small_exposed, photo.target_small.to(device)))
    targets = torch.cat([photo.target_patches for photo in photos]).to(device)
    return model(torch.cat(exposed)), targets, torch.stack(aux).mean()


@torch.no_grad()
def validate(run: Run, pairs: list[tuple[Tensor, Tensor]], step: int, save: bool = True) -> float:
    """Mean PSNR over the held-out photos; the weights are written when it improves."""
    run.model.eval()
    score = float(
        np.mean(
            [psnr(run.model.enhance(low.to(run.device)).cpu(), target) for low, target in pairs]
        )
    )
    run.model.train()
    wall = time.time() - run.t0
    improved = save and score > run.best
    run.log["val"].append(
        {"step": step, "psnr": score, "wall_s": round(wall, 1), "saved": improved}
    )
    print(f"val step {step}: {score:.2f} dB{' (best, saved)' if improved else ''}", flush=True)
    if improved:
        run.best = score
        meta = {
            "training_steps": step,
            "val_psnr": score,
            "resumed_from": run.log["resumed_from"],
            "dataset": "BSDS500 train + test (held out: every 16th test photo)",
            "degradation": "degradation.night_scenes + degradation.recipe",
            "licence_note": "trained on research data (BSDS500); for demonstration/evaluation",
        }
        save_night_v2(run.model, run.out_path, extra_metadata=meta)
    run.log["wall_time_s"] = round(wall, 1)
    run.log["steps_done"] = step
    run.log_path.write_text(json.dumps(run.log, indent=1))
    return score


def train(run: Run, batches: SceneBatches, val: list[tuple[Tensor, Tensor]]) -> int:
    """Steps until ``train.steps`` or the time budget runs out; returns the steps taken."""
    tcfg = run.cfg["train"]
    steps, every = int(tcfg["steps"]), int(run.cfg["val"]["every"])
    budget_s = float(tcfg.get("time_budget_minutes") or 0) * 60.0
    eps, clip, aux_weight = (
        float(tcfg["charbonnier_eps"]),
        float(tcfg["grad_clip"]),
        float(tcfg["exposure_loss"]),
    )
    chroma_weight = float(tcfg.get("chroma_loss", 0.0))
    tuner = ThreadTuner(int(tcfg.get("threads", 2)), int(tcfg.get("retune_every", 0) or 0))
    running, step, active, last = 0.0, 0, 0.0, time.time()
    for photos in batches:
        # A step longer than PAUSE_S means the process was stopped (SIGSTOP while someone
        # benchmarks the machine): that time is not the run's and must not decay its schedule.
        now = time.time()
        active, last = active + min(now - last, PAUSE_S), now
        progress = schedule_progress(step, steps, active, budget_s)
        if step >= steps or progress >= 1.0:
            break
        tuner.before_step(step)
        lr = lr_at(progress, step, tcfg)
        for group in run.opt.param_groups:
            group["lr"] = lr
        out, target, aux = forward_batch(run.model, photos, run.device)
        loss = charbonnier(out, target, eps) + aux_weight * aux
        if chroma_weight:
            loss = loss + chroma_weight * chroma_loss(out, target, eps)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
        run.opt.step()
        step += 1
        tuner.after_step(step)
        running += loss.item()
        if step % int(tcfg["log_every"]) == 0:
            wall = time.time() - run.t0
            mean = running / int(tcfg["log_every"])
            run.log["loss"].append({"step": step, "loss": mean, "lr": lr, "wall_s": round(wall, 1)})
            print(
                f"step {step} loss {mean:.4f} lr {lr:.2e} {wall:.0f}s ({step / wall:.2f} it/s)",
                flush=True,
            )
            running = 0.0
        if step % every == 0:
            validate(run, val, step)
    return step


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one training according to the config; return the run log (also written as JSON)."""
    args = parse_args(argv)
    cfg = load_config(args)
    device = pick_device(args.device or AUTO)
    torch.set_num_threads(int(cfg["train"].get("threads", 2)))
    run_seed = int(cfg["seed"]) + int(time.time()) % 100_000  # each resumed run sees new samples
    random.seed(run_seed)
    np.random.seed(run_seed % 2**32)
    torch.manual_seed(run_seed)
    photos, val = load_data(cfg)
    run = start_run(args, cfg, device)
    run.log["seed"] = run_seed
    start = validate(run, val, 0, save=False)
    run.best = start if run.log["resumed_from"].endswith(run.out_path.name) else float("-inf")
    run.t0 = time.time()
    step = train(run, SceneBatches(photos, cfg, run_seed), val)
    validate(run, val, step)
    print(f"best {run.best:.2f} dB; wrote {run.out_path} and {run.log_path}", flush=True)
    return run.log


if __name__ == "__main__":
    main()
