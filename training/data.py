"""The photos a training reads, and the degraded batches it learns and selects models on.

Version 2 of the night model decides exposure on the *whole* frame and restores patches, so a
training sample is a whole degraded photo (for the exposure network) with patches cut from it
(for the U-Net). Degrading a whole 481x321 photo costs tens of milliseconds on one core, so each
degraded photo gives several patches.

Two recipes are mixed: ``degradation.night_scenes`` (light that varies across the frame, lamps,
casts, mosaic noise: what real night photos look like) and, for a share of samples,
``degradation.recipe`` (one global exposure: the recipe of the synthetic evaluation sets).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from degradation.night_scenes import degrade_scene
from degradation.recipe import degrade


def load_images(folder: Path) -> list[np.ndarray]:
    """Read every JPEG/PNG in ``folder`` (sorted by name) as uint8 H x W x 3 arrays."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    out = []
    for p in files:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return out


def split_holdout(
    images: list[np.ndarray], every: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(kept for training, held out for model selection): every ``every``-th photo is held out,
    so the held-out photos spread over the set instead of being one file-name range."""
    held = [img for i, img in enumerate(images) if i % every == every // 2]
    kept = [img for i, img in enumerate(images) if i % every != every // 2]
    return kept, held


def to_tensor(image: np.ndarray) -> Tensor:
    """H x W x 3 float array -> 1 x 3 x H x W float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]


def degrade_pair(
    clean: np.ndarray, rng: np.random.Generator, global_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """(degraded input, target) for one clean photo (float in [0, 1]), by one of the recipes."""
    if rng.uniform() < global_share:
        low, _ = degrade(clean, rng)
        return low, clean.astype(np.float32)
    low, target, _ = degrade_scene(clean, rng)
    return low, target


@dataclass
class Photo:
    """One degraded photo and the patches cut from it (boxes are top, left, height, width)."""

    low: Tensor
    """1 x 3 x H x W, the whole degraded photo."""
    boxes: list[tuple[int, int, int, int]]
    low_patches: Tensor
    target_patches: Tensor
    target_small: Tensor
    """The target downscaled by :data:`SMALL_FACTOR`, for the exposure's own loss."""


SMALL_FACTOR = 4


class SceneBatches:
    """Endless stream of batches: lists of :class:`Photo`, ``photos`` photos of ``patches``
    random ``patch``-px crops each, drawn and degraded from ``seed``."""

    def __init__(self, images: list[np.ndarray], cfg: dict[str, Any], seed: int) -> None:
        tcfg = cfg["train"]
        self.images = images
        self.patch = int(tcfg["patch_size"])
        self.photos = int(tcfg["photos_per_batch"])
        self.patches = int(tcfg["patches_per_photo"])
        self.global_share = float(tcfg["global_recipe_share"])
        self.rng = np.random.default_rng(seed)

    def _photo(self) -> Photo:
        rng, p = self.rng, self.patch
        img = self.images[int(rng.integers(len(self.images)))]
        img = np.rot90(img, int(rng.integers(4)))
        if rng.uniform() < 0.5:
            img = img[:, ::-1]
        clean = np.ascontiguousarray(img, dtype=np.float32) / 255.0
        low, target = degrade_pair(clean, rng, self.global_share)
        h, w = low.shape[:2]
        boxes = [
            (int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1)), p, p)
            for _ in range(self.patches)
        ]
        low_t, target_t = to_tensor(low), to_tensor(target)
        return Photo(
            low=low_t,
            boxes=boxes,
            low_patches=torch.cat([low_t[..., y : y + p, x : x + p] for y, x, _, _ in boxes]),
            target_patches=torch.cat([target_t[..., y : y + p, x : x + p] for y, x, _, _ in boxes]),
            target_small=torch.nn.functional.avg_pool2d(target_t, SMALL_FACTOR),
        )

    def __iter__(self) -> Iterator[list[Photo]]:
        while True:
            yield [self._photo() for _ in range(self.photos)]


def build_val_set(
    images: list[np.ndarray], seed: int, global_share: float
) -> list[tuple[Tensor, Tensor]]:
    """Whole held-out photos degraded deterministically (photo ``i`` from
    ``default_rng([seed, i])``), as (input, target) 1 x 3 x H x W pairs; the recipe mix is the
    training one, so the figure tracks what training optimises."""
    pairs = []
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        clean = img[: h // 16 * 16, : w // 16 * 16].astype(np.float32) / 255.0
        low, target = degrade_pair(clean, np.random.default_rng([seed, i]), global_share)
        pairs.append((to_tensor(low), to_tensor(target)))
    return pairs
