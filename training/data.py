"""The photos a training reads and the degraded pairs it learns and validates on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from workers.degradation import degrade, degrade_eval_set


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


class DegradedPatches(IterableDataset):
    """Endless stream of (degraded, clean) float32 CHW patch pairs from a list of photos."""

    def __init__(self, images: list[np.ndarray], patch: int, margin: int, seed: int) -> None:
        super().__init__()
        self.images = images
        self.patch = patch
        self.margin = margin
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker])
        size = self.patch + 2 * self.margin
        while True:
            img = self.images[int(rng.integers(len(self.images)))]
            h, w = img.shape[:2]
            if h < size or w < size:
                continue
            y = int(rng.integers(0, h - size + 1))
            x = int(rng.integers(0, w - size + 1))
            crop = img[y : y + size, x : x + size]
            k = int(rng.integers(4))
            crop = np.rot90(crop, k)
            if rng.uniform() < 0.5:
                crop = crop[:, ::-1]
            clean = np.ascontiguousarray(crop, dtype=np.float32) / 255.0
            low, _ = degrade(clean, rng)
            m, p = self.margin, self.patch
            low = low[m : m + p, m : m + p]
            clean = clean[m : m + p, m : m + p]
            yield (
                torch.from_numpy(np.ascontiguousarray(low.transpose(2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1))),
            )


def _worker_init(_: int) -> None:
    # The main process owns the cores for the network; the worker's numpy work is single-threaded.
    torch.set_num_threads(1)


def build_loader(
    images: list[np.ndarray], cfg: dict[str, Any], device: torch.device
) -> DataLoader[tuple[Tensor, Tensor]]:
    tcfg = cfg["train"]
    data = DegradedPatches(images, int(tcfg["patch_size"]), int(tcfg["margin"]), int(cfg["seed"]))
    workers = int(tcfg["num_workers"])
    return DataLoader(
        data,
        batch_size=int(tcfg["batch_size"]),
        num_workers=workers,
        worker_init_fn=_worker_init if workers else None,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
    )


def build_val_set(folder: Path, count: int, crop: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """Centre crops of the first ``count`` val photos, degraded deterministically from ``seed``."""
    cleans = []
    for img in load_images(folder)[:count]:
        h, w = img.shape[:2]
        c = min(crop, h, w) // 16 * 16
        y, x = (h - c) // 2, (w - c) // 2
        cleans.append(img[y : y + c, x : x + c].astype(np.float32) / 255.0)
    degraded = degrade_eval_set(cleans, seed)
    pairs = []
    for clean, (low, _) in zip(cleans, degraded, strict=True):
        pairs.append(
            (
                torch.from_numpy(low.transpose(2, 0, 1).copy())[None],
                torch.from_numpy(clean.transpose(2, 0, 1).copy())[None],
            )
        )
    return pairs
