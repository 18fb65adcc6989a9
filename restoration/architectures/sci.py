"""SCI, self-calibrated illumination (Ma et al., CVPR 2022, arXiv 2204.10137), on the authors'
weights.

Retinex view of a dim photo: what the camera records is the scene's reflectance times its
illumination, so dividing by an estimate of the illumination gives the scene as if well lit.
SCI trains a cascade of illumination estimators with a self-calibration module that pulls each
stage's input towards the same well-lit result; because of that the stages agree, and at test
time one stage alone does the job: three 3x3 convolutions on 3 channels (258 parameters)
predict a correction that is added to the photo and clamped to [1e-4, 1] as the illumination,
and the output is ``clamp(photo / illumination, 0, 1)``.

The published files hold the whole training network (``enhance.*`` and the training-only
``calibrate.*``, with shared modules stored twice); only ``enhance.*`` runs, and its keys load
unchanged. BatchNorm keeps PyTorch's eps of 1e-5: the stored running variances (about 1e-6)
are far below it, so another eps changes the output visibly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from restoration.architectures.checkpoints import load_strict, read_state_dict
from restoration.padding import SizeRequirements

__all__ = ["SCI", "load_sci"]

CHANNELS = 3
ILLUMINATION_FLOOR = 1e-4


class _Illumination(nn.Module):
    """The stage that runs at test time (``EnhanceNetwork(layers=1, channels=3)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_conv = nn.Sequential(nn.Conv2d(3, CHANNELS, 3, 1, 1), nn.ReLU())
        conv = nn.Sequential(
            nn.Conv2d(CHANNELS, CHANNELS, 3, 1, 1), nn.BatchNorm2d(CHANNELS), nn.ReLU()
        )
        # The published layout stores the one residual block twice, as ``conv`` and as
        # ``blocks.0``: the same module under two names.
        self.conv = conv
        self.blocks = nn.ModuleList([conv])
        self.out_conv = nn.Sequential(nn.Conv2d(CHANNELS, 3, 3, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.in_conv(x)
        for block in self.blocks:
            features = features + block(features)
        return torch.clamp(self.out_conv(features) + x, ILLUMINATION_FLOOR, 1.0)


class SCI(nn.Module):
    """Photo -> photo divided by its estimated illumination. Three 3x3 layers reach 3 pixels,
    so it tiles exactly with any overlap the restorer uses."""

    def __init__(self) -> None:
        super().__init__()
        self.enhance = _Illumination()

    @property
    def size_requirements(self) -> SizeRequirements:
        return SizeRequirements()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x / self.enhance(x), 0.0, 1.0)


def load_sci(path: str | Path) -> SCI:
    """A published SCI file (``medium.pt``, ``difficult.pt``, ...) as a network in eval mode on
    the CPU; the training-only ``calibrate.*`` tensors are left out."""
    state_dict = read_state_dict(path, "SCI")
    model = SCI()
    if not any(key.startswith("enhance.") for key in state_dict):
        raise ValueError(f"not a SCI checkpoint: {Path(path).name} has no 'enhance.*' tensors")
    wanted = {key: value for key, value in state_dict.items() if key.startswith("enhance.")}
    load_strict(model, wanted, path, "SCI")
    return model.eval()
