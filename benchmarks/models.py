"""Megapixels per second per model and precision, through Darkroom's own tiled restorer.

Architectures are built with their published hyper-parameters and random weights (speed does
not depend on the weights), except darkroom-night, which runs its shipped weights. Run:

    .venv/bin/python -m benchmarks.models [--device cpu|cuda] [--size 512] [--repeat 3]
        [--models darkroom-night,mirnet-lol,...]

On CPU the heavy models take minutes per tile; pick models with --models.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.flops import count_flops
from restoration.device.placement import pick_device
from restoration.loading import load_restorer
from restoration.restorers import TiledRestorer
from restoration.tile_plan import full_batches_shape
from restoration.tiling import tiled_forward
from shared.catalogue import BUNDLED_WEIGHTS, CATALOGUE, ModelEntry
from shared.config import Settings


def _spandrel_builders() -> dict[str, Callable[[], torch.nn.Module]]:
    from spandrel.architectures.FFTformer import FFTformer
    from spandrel.architectures.IPT import IPT
    from spandrel.architectures.NAFNet import NAFNet
    from spandrel.architectures.RetinexFormer import RetinexFormer
    from spandrel.architectures.SCUNet import SCUNet

    return {
        "nafnet-gopro": lambda: NAFNet(
            width=32, enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1]
        ),
        "retinexformer-lol": lambda: RetinexFormer(),
        "scunet-real": lambda: SCUNet(),
        "fftformer-gopro": lambda: FFTformer(),
        "ipt-denoise-30": lambda: IPT(scale=[1]),
    }


def checkpoint(name: str, folder: Path) -> Path:
    """A weights file for ``name``: the shipped one, or random weights in the publisher's layout."""
    entry = CATALOGUE[name]
    if entry.bundled:
        return BUNDLED_WEIGHTS / entry.weights_file
    path = folder / entry.weights_file
    torch.manual_seed(0)
    if entry.architecture == "mirnet":
        from restoration.architectures.mirnet import MIRNet, save_mirnet_checkpoint

        save_mirnet_checkpoint(MIRNet(), path)
    else:
        torch.save(_spandrel_builders()[name]().state_dict(), path)
    return path


def measure(
    entry: ModelEntry, path: Path, device: torch.device, precision: str, size: int, repeat: int
) -> float:
    # The precision is forced through the setting jobs use; for spandrel models the entry's
    # list is not consulted (spandrel's own flags are), so it must not decide it here.
    tuned = dataclasses.replace(entry, tile=size)
    forced = Settings.model_validate({"tile_batch_size": 1, "precision": precision})
    restorer = load_restorer(tuned, path, device, forced)
    assert isinstance(restorer, TiledRestorer)
    # A photo of whole batches of full tiles: the shape the warm-up compiled and tuned. A photo
    # of one tile would take another path (the night model skips its whole-photo pass), whose
    # signature was never warmed, and be measured eager.
    shape = full_batches_shape(restorer.tiles, restorer.size) or (size, size)
    pixels = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    restorer.restore(pixels)  # warm-up: cuDNN autotuning, allocator
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeat):
        restorer.restore(pixels)
    synchronize(device)
    return repeat * shape[0] * shape[1] / 1e6 / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ModelPass:
    """The model's forward passes alone on one photo's tiles, cut exactly as the worker cuts
    them and already on the device, including the whole-photo pass the model needs
    (``forward_for``): its speed with nothing around it."""

    def __init__(self, restorer: TiledRestorer, image: torch.Tensor) -> None:
        """``image``: 1 x 3 x H x W on the restorer's device."""
        self.restorer = restorer
        self.image = image
        self.batches: list[torch.Tensor] = []

        def record(batch: torch.Tensor) -> torch.Tensor:
            self.batches.append(batch)  # made outside inference mode, as in a job
            return batch

        tiles_from, _ = restorer.forward_for(image)
        tiled_forward(record, tiles_from, config=restorer.tiles, size=restorer.size)
        self.tile_pixels = sum(b.shape[0] * b.shape[2] * b.shape[3] for b in self.batches)
        """Pixels the model sees per pass: more than the photo's, as tiles overlap."""

    def run(self) -> None:
        with torch.inference_mode():
            _, forward = self.restorer.forward_for(self.image)
            for batch in self.batches:
                forward(batch, None)

    def flops(self) -> int:
        """FLOPs of one pass (``benchmarks.flops``); the pass warms up as well."""
        return count_flops(self.run)

    def seconds(self, repeat: int) -> float:
        """Mean seconds per pass over ``repeat`` passes; warm up first (``run`` or ``flops``)."""
        synchronize(self.restorer.device)
        start = time.perf_counter()
        for _ in range(repeat):
            self.run()
        synchronize(self.restorer.device)
        return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=pick_device().type)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--models", default="darkroom-night,nafnet-gopro,retinexformer-lol,scunet-real,mirnet-lol"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    console = Console()
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = Table(
        "model",
        *[f"{p} MP/s" for p in precisions],
        title=f"{label}, {args.size}x{args.size} tiles, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            entry = CATALOGUE[name]
            path = checkpoint(name, Path(tmp))
            cells = []
            for precision in precisions:
                if precision != "fp32" and precision not in entry.precisions:
                    cells.append("-")
                    continue
                rate = measure(entry, path, device, precision, args.size, args.repeat)
                cells.append(f"{rate:.3f}")
            table.add_row(name, *cells)
            console.print(f"{name}: {' '.join(cells)}")
    console.print(table)


if __name__ == "__main__":
    main()
