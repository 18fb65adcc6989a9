"""Train Darkroom's night model (NightNAFNet) on BSDS500 with on-the-fly synthetic degradations.

Usage::

    .venv/bin/python -m training.train --config training/night.yaml [--device cpu|cuda]
        [--steps N] [--out PATH]

Design choices, and why:

* **Degradation on the fly** (``workers.degradation``, ~12 ms a patch): every step sees new
  exposures, kernels and noise, so 200 training photos do not overfit. On a GPU machine set
  ``num_workers`` > 0 so it overlaps the training step; on a 2-core CPU keep it at 0, because a
  worker process takes a core from the two OpenMP threads, which then stall at every barrier
  (measured: 0.45 vs 1.6 steps/s).
* **Thread tuning** (:class:`ThreadTuner`): the same stall happens when anything else runs on a
  small shared machine, so the loop periodically times 1 vs 2 threads and keeps the faster.
* **Patches with a margin**: each patch is degraded with ``margin`` pixels of real context
  around it and then cropped, so camera-shake blur at the patch border smears real neighbours in,
  not padding; the margin is a multiple of 8 so JPEG blocks stay aligned with the patch.
* **Time-aware cosine schedule**: the learning rate follows a cosine over
  ``max(step / steps, elapsed / time_budget)``, so a run on a slow CPU that would not reach
  ``steps`` in its budget still ends with a fully decayed learning rate instead of being cut
  mid-schedule (the step count reached is recorded in the weight file).
* **Charbonnier loss in sRGB**: a smooth L1, which optimises PSNR-like fidelity and is robust to
  the heavy-tailed errors that noise and JPEG leave.
* **Validation** on fixed crops of BSDS500 val degraded with a fixed seed (image ``i`` uses
  ``default_rng([seed, i])``), reporting PSNR of the degraded input and of the output, so runs
  are comparable; weights are written at every validation so a usable file exists early.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor
from torch.utils.data import DataLoader

from training.data import build_loader, build_val_set, load_images
from workers.archs.nafnet_night import NightNAFNet, save_night

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """Where the shared data lives: ``$DARKROOM_SHARED_DIR``, else ``<repo>/../shared``."""
    env = os.environ.get("DARKROOM_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


class ThreadTuner:
    """Pick the faster of 1 and ``max_threads`` intra-op threads, re-measured periodically.

    On a small shared CPU (2 cores, other processes running tests), two OpenMP threads that lose
    a core to another process spin at every barrier and run 3-5x slower than usual, while one
    thread only slows down ~2x. So every ``every`` steps the tuner times ``probe`` steps with
    each thread count and keeps the faster one until the next probe. ``every=0`` disables it.
    """

    def __init__(self, max_threads: int, every: int, probe: int = 8) -> None:
        self.max_threads = max(1, max_threads)
        self.every = every
        self.probe = probe
        self.timings: dict[int, float] = {}
        self._t = 0.0
        torch.set_num_threads(self.max_threads)

    def _phase(self, step: int) -> int | None:
        """The thread count being probed at ``step``, or None outside a probe window."""
        if self.every <= 0 or self.max_threads == 1:
            return None
        offset = step % self.every
        if offset < self.probe:
            return 1
        if offset < 2 * self.probe:
            return self.max_threads
        return None

    def before_step(self, step: int) -> None:
        threads = self._phase(step)
        if threads is not None:
            torch.set_num_threads(threads)
        self._t = time.perf_counter()

    def after_step(self, step: int) -> None:
        threads = self._phase(step - 1)
        if threads is None:
            return
        # The first step of each window absorbs the switch; time the rest.
        if (step - 1) % self.every not in (0, self.probe):
            self.timings[threads] = self.timings.get(threads, 0.0) + time.perf_counter() - self._t
        if (step - 1) % self.every == 2 * self.probe - 1:
            best = min(self.timings, key=lambda k: self.timings[k])
            torch.set_num_threads(best)
            self.timings = {}


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two [0, 1] images (``a`` is clamped first, as a saved photo would be)."""
    mse = torch.mean((a.clamp(0, 1) - b) ** 2).item()
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def validate(
    model: NightNAFNet, pairs: list[tuple[Tensor, Tensor]], device: torch.device
) -> tuple[float, float]:
    """Mean PSNR of the degraded inputs and of the model's outputs over ``pairs``."""
    model.eval()
    before, after = [], []
    for low, clean in pairs:
        out = model(low.to(device)).cpu()
        before.append(psnr(low, clean))
        after.append(psnr(out, clean))
    model.train()
    return float(np.mean(before)), float(np.mean(after))


def charbonnier(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """Charbonnier (smooth L1) loss: sqrt((x - y)^2 + eps^2), averaged."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def lr_at(progress: float, step: int, cfg: dict[str, Any]) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``lr`` to ``min_lr`` over progress."""
    lr, min_lr, warm = float(cfg["lr"]), float(cfg["min_lr"]), int(cfg["warmup_steps"])
    if step < warm:
        return lr * (step + 1) / warm
    progress = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--steps``/``--out``/``--device`` override the config."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="training/night.yaml")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: auto")
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument("--out", default=None, help="override output.weights")
    ap.add_argument(
        "--time-budget", type=float, default=None, help="override train.time_budget_minutes"
    )
    return ap.parse_args(argv)


@dataclass
class Run:
    """What the phases of one training share, so each takes the run instead of a dozen locals."""

    cfg: dict[str, Any]
    device: torch.device
    model: NightNAFNet
    opt: torch.optim.Optimizer
    out_path: Path
    log_path: Path
    log: dict[str, Any]
    t0: float = field(default_factory=time.time)
    """The time budget and every wall time count from here: just before the loop."""


def load_config(args: argparse.Namespace) -> dict[str, Any]:
    """The YAML config with the command line's overrides, so the run log records what ran."""
    cfg: dict[str, Any] = yaml.safe_load(Path(args.config).read_text())
    if args.steps is not None:
        cfg["train"]["steps"] = args.steps
    if args.time_budget is not None:
        cfg["train"]["time_budget_minutes"] = args.time_budget
    return cfg


def seed_everything(cfg: dict[str, Any]) -> None:
    """Threads and every RNG set before anything draws from them, so a run can be repeated."""
    torch.set_num_threads(int(cfg["train"].get("threads", 2)))
    seed = int(cfg["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(cfg: dict[str, Any]) -> tuple[list[np.ndarray], list[tuple[Tensor, Tensor]]]:
    """The training photos and the fixed validation pairs, from the shared data folder."""
    shared, vcfg = shared_dir(), cfg["val"]
    train_images = load_images(shared / cfg["data"]["train"])
    val_dir = shared / cfg["data"]["val"]
    val_pairs = build_val_set(val_dir, int(vcfg["images"]), int(vcfg["crop"]), int(vcfg["seed"]))
    return train_images, val_pairs


def build_model(
    cfg: dict[str, Any], device: torch.device
) -> tuple[NightNAFNet, torch.optim.Optimizer]:
    tcfg = cfg["train"]
    model = NightNAFNet(**cfg["model"]).to(device)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=float(tcfg["lr"]),
        betas=(float(tcfg["betas"][0]), float(tcfg["betas"][1])),
        weight_decay=float(tcfg["weight_decay"]),
    )
    return model, opt


def start_run(
    cfg: dict[str, Any],
    out: str | None,
    device: torch.device,
    model: NightNAFNet,
    opt: torch.optim.Optimizer,
    n_images: int,
) -> Run:
    """The run log and where it and the weights go (``out``: ``--out``); the clock starts."""
    out_path = Path(out) if out else REPO_ROOT / cfg["output"]["weights"]
    run_dir = REPO_ROOT / cfg["output"]["log_dir"]
    run_dir.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    log: dict[str, Any] = {
        "name": cfg["name"],
        "config": cfg,
        "device": str(device),
        "params": n_params,
        "dataset": f"bsds500/train ({n_images} images), val bsds500/val",
        "loss": [],
        "val": [],
    }
    steps = int(cfg["train"]["steps"])
    print(f"NightNAFNet {n_params / 1e6:.3f} M params on {device}; {steps} steps", flush=True)
    return Run(cfg, device, model, opt, out_path, run_dir / f"{cfg['name']}.json", log)


def schedule_progress(step: int, steps: int, elapsed: float, budget_s: float) -> float:
    """Whichever of steps and time budget is further along, so a slow run still fully decays."""
    progress = step / steps
    if budget_s > 0:
        progress = max(progress, elapsed / budget_s)
    return progress


def train_step(run: Run, low: Tensor, clean: Tensor, lr: float, eps: float, clip: float) -> Tensor:
    """One optimiser step; the loss comes back as a tensor, as reading it waits for the step."""
    for g in run.opt.param_groups:
        g["lr"] = lr
    low, clean = low.to(run.device, non_blocking=True), clean.to(run.device, non_blocking=True)
    loss = charbonnier(run.model(low), clean, eps)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.opt.step()
    return loss


def log_loss(run: Run, step: int, loss: float, lr: float) -> None:
    wall = time.time() - run.t0
    run.log["loss"].append({"step": step, "loss": loss, "lr": lr, "wall_s": wall})
    print(
        f"step {step} loss {loss:.4f} lr {lr:.2e} "
        f"{wall:.0f}s ({step / wall:.2f} it/s, {torch.get_num_threads()} threads)",
        flush=True,
    )


def save_checkpoint(run: Run, step: int, wall: float, final: bool) -> None:
    """The weights with their provenance and the run log, so a usable file exists early."""
    meta = {
        "training_steps": step,
        "wall_time_s": round(wall, 1),
        "seed": int(run.cfg["seed"]),
        "dataset": "BSDS500 train (200 images), synthetic handheld-night degradation",
        "degradation": "workers.degradation v1",
        "final": final,
        "licence_note": "trained on research data (BSDS500); for demonstration/evaluation",
    }
    if run.log["val"]:
        meta["val_psnr"] = run.log["val"][-1]
    version = str(run.cfg.get("version", "1"))
    save_night(run.model, run.out_path, extra_metadata=meta, version=version)
    run.log["wall_time_s"] = round(wall, 1)
    run.log["steps_done"] = step
    run.log_path.write_text(json.dumps(run.log, indent=1))


def validate_and_save(
    run: Run, val_pairs: list[tuple[Tensor, Tensor]], step: int, final: bool
) -> None:
    before, after = validate(run.model, val_pairs, run.device)
    wall = time.time() - run.t0
    run.log["val"].append({"step": step, "degraded_psnr": before, "psnr": after, "wall_s": wall})
    if final:
        print(
            f"final step {step}: degraded {before:.2f} dB -> {after:.2f} dB, {wall:.0f}s",
            flush=True,
        )
    else:
        print(f"val step {step}: degraded {before:.2f} dB -> {after:.2f} dB", flush=True)
    save_checkpoint(run, step, wall, final=final)


def train(
    run: Run, loader: DataLoader[tuple[Tensor, Tensor]], val_pairs: list[tuple[Tensor, Tensor]]
) -> int:
    """Steps until ``train.steps`` or the time budget runs out; returns the steps taken."""
    tcfg, vcfg = run.cfg["train"], run.cfg["val"]
    steps = int(tcfg["steps"])
    budget_s = float(tcfg.get("time_budget_minutes") or 0) * 60.0
    run.model.train()
    running, count, step = 0.0, 0, 0
    eps = float(tcfg.get("charbonnier_eps", 1e-3))
    clip = float(tcfg.get("grad_clip", 0) or 0)
    tuner = ThreadTuner(int(tcfg.get("threads", 2)), int(tcfg.get("retune_every", 0) or 0))
    for low, clean in loader:
        tuner.before_step(step)
        progress = schedule_progress(step, steps, time.time() - run.t0, budget_s)
        if step >= steps or progress >= 1.0:
            break
        lr = lr_at(progress, step, tcfg)
        loss = train_step(run, low, clean, lr, eps, clip)
        step += 1
        tuner.after_step(step)
        running += loss.item()
        count += 1
        if step % int(tcfg["log_every"]) == 0:
            log_loss(run, step, running / count, lr)
            running, count = 0.0, 0
        if step % int(vcfg["every"]) == 0:
            validate_and_save(run, val_pairs, step, final=False)
    return step


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one training according to the config; return the run log (also written as JSON)."""
    args = parse_args(argv)
    cfg = load_config(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed_everything(cfg)
    train_images, val_pairs = load_data(cfg)
    model, opt = build_model(cfg, device)
    loader = build_loader(train_images, cfg, device)
    run = start_run(cfg, args.out, device, model, opt, len(train_images))
    step = train(run, loader, val_pairs)
    validate_and_save(run, val_pairs, step, final=True)
    print(f"wrote {run.out_path} and {run.log_path}", flush=True)
    return run.log


if __name__ == "__main__":
    main()
