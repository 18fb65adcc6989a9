"""What any training loop here needs besides the model: the learning-rate schedule, the
loss, PSNR, and a thread count that keeps up on a small shared CPU."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from restoration.chroma_cleanup import colour_difference


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


def charbonnier(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """Charbonnier (smooth L1) loss: sqrt((x - y)^2 + eps^2), averaged."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def chroma_loss(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """Charbonnier on the colour-difference planes (R - Y, B - Y) at half size.

    Lifted shadows show noise mostly as chroma blotches a few pixels wide; the plain loss weighs
    them like any other error, so this term puts extra weight where a person sees mottling.
    """
    planes, planes_t = colour_difference(pred)[1], colour_difference(target)[1]
    return charbonnier(F.avg_pool2d(planes, 2), F.avg_pool2d(planes_t, 2), eps)


def lr_at(progress: float, step: int, cfg: dict[str, Any]) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``lr`` to ``min_lr`` over progress."""
    lr, min_lr, warm = float(cfg["lr"]), float(cfg["min_lr"]), int(cfg["warmup_steps"])
    if step < warm:
        return lr * (step + 1) / warm
    progress = min(max(progress, 0.0), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def schedule_progress(step: int, steps: int, elapsed: float, budget_s: float) -> float:
    """Whichever of steps and time budget is further along, so a slow run still fully decays."""
    progress = step / steps
    if budget_s > 0:
        progress = max(progress, elapsed / budget_s)
    return progress
