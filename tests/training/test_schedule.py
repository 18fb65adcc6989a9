"""The training losses and schedule: pure functions, no service."""

from __future__ import annotations

import torch

from training.schedule import charbonnier, chroma_loss, lr_at, schedule_progress

EPS = 1e-3


def test_chroma_loss_ignores_an_error_in_brightness_alone() -> None:
    target = torch.rand(2, 3, 16, 16)
    brighter = target + 0.1  # the same shift on every channel: luma changes, colour does not
    assert chroma_loss(brighter, target, EPS).item() < 1.01 * EPS
    assert charbonnier(brighter, target, EPS).item() > 0.09


def test_chroma_loss_sees_a_colour_blotch() -> None:
    target = torch.full((1, 3, 16, 16), 0.2)
    blotched = target.clone()
    blotched[:, 0, 4:12, 4:12] += 0.1  # a colour patch a few pixels wide, as mottling looks
    blotched[:, 2, 4:12, 4:12] -= 0.1
    assert chroma_loss(blotched, target, EPS).item() > 10 * EPS


def test_the_schedule_decays_fully_when_the_time_budget_runs_out_first() -> None:
    cfg = {"lr": 1e-3, "min_lr": 1e-6, "warmup_steps": 10}
    progress = schedule_progress(step=100, steps=20_000, elapsed=3600.0, budget_s=3600.0)
    assert progress == 1.0
    assert lr_at(progress, 100, cfg) == 1e-6
    assert lr_at(0.0, 0, cfg) == 1e-4
