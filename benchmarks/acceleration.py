"""Which way of running each model is fastest: eager, channels-last, compiled, or both, per
precision and tiles per batch, and how close the fastest comes to the GPU's peak.

Each model is loaded the way a worker loads it (``load_restorer`` with
``DARKROOM_ACCELERATION`` forced per column, so the load time includes the warm-up and any
compilation), then its forward passes alone are timed on the tiles of a photo cut into whole
batches of full-size tiles, at the catalogue's tile size (``benchmarks.models.ModelPass``).
Rates are megapixels of tiles per second; TFLOP/s are the FLOPs of one eager pass, counted
once per model and batch size, times passes per second (``benchmarks.flops``). The last lines
name the value to put in each catalogue entry (``ModelEntry.acceleration``): the fastest choice
at the precision workers use on this device and the default tiles per batch, where going from
eager through channels-last, compile and both, a choice replaces the one picked so far only if
it is ``MARGIN`` faster. Run::

    .venv/bin/python -m benchmarks.acceleration [--device cuda] [--models mirnet-lol,...]
        [--precisions fp32,bf16,fp16] [--batch-sizes 1,4] [--tile N] [--repeat 3]
        [--choices eager,channels_last,compile,compile+channels_last] [--peak-tflops N] [--tiny]

Weights are random at the published sizes (``darkroom-night``: its shipped weights); ``--tiny``
runs ``mirnet-lol`` as a small random MIRNet, cheap enough for a CPU. On CUDA an extra column
times eager with cuDNN's heuristics instead of its autotuning (``DARKROOM_CUDNN_BENCHMARK``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from rich.console import Console

from benchmarks.flops import peak_tflops
from benchmarks.models import ModelPass, checkpoint
from benchmarks.reports import print_acceleration
from restoration.device.placement import pick_device
from restoration.loading import load_restorer
from restoration.restorers import TiledRestorer, half_dtype
from restoration.tiling import full_batches_shape
from shared.catalogue import CATALOGUE, ModelEntry
from shared.config import ACCELERATIONS, Acceleration, Settings

_T = TypeVar("_T")

MARGIN = 1.05
"""A costlier choice (in the order of ``ACCELERATIONS``: eager, channels-last, compile, both) is
recommended over a cheaper one only if it is this much faster: compiling costs start-up time on
every worker, and each choice is one more thing that can go wrong."""

HEURISTICS = "eager, cuDNN heuristics"
"""The CUDA-only baseline column: eager without cuDNN's autotuning."""

PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Cell:
    column: str
    """An acceleration choice, or :data:`HEURISTICS`."""
    megapixels_per_s: float
    seconds_per_pass: float
    load_s: float
    """Loading and warming up: where compilation happens."""
    compiled: bool


@dataclass(frozen=True)
class Row:
    model: str
    precision: str
    batch_size: int
    tile: int
    flops_per_pass: int
    """Of one pass over the photo's tiles; the same for every column."""
    cells: list[Cell]

    def cell(self, column: str) -> Cell:
        return next(cell for cell in self.cells if cell.column == column)

    def speed_up(self, column: str) -> float:
        return self.cell(column).megapixels_per_s / self.cell("eager").megapixels_per_s

    def tflops_per_s(self, column: str) -> float:
        return self.flops_per_pass / 1e12 / self.cell(column).seconds_per_pass

    @property
    def recommended(self) -> Acceleration:
        """From eager through costlier choices, each replacing the pick so far only if it is
        :data:`MARGIN` faster."""
        pick = self.cell("eager")
        for choice in ACCELERATIONS:
            cell = next((c for c in self.cells if c.column == choice), None)
            if cell is not None and cell.megapixels_per_s > pick.megapixels_per_s * MARGIN:
                pick = cell
        return pick.column  # type: ignore[return-value]


@dataclass(frozen=True)
class Report:
    device: str
    label: str
    peak_tflops: float | None
    rows: list[Row]
    recommendations: dict[str, Row]
    """Per model: the row its catalogue value is read from."""


def _settings(device: torch.device, precision: str, batch_size: int, column: str) -> Settings:
    return Settings(
        device=device.type,
        precision=precision,  # type: ignore[arg-type]
        tile_batch_size=batch_size,
        acceleration="eager" if column == HEURISTICS else column,  # type: ignore[arg-type]
        cudnn_benchmark=column != HEURISTICS,
    )


def measure_row(
    entry: ModelEntry,
    path: Path,
    device: torch.device,
    precision: str,
    batch_size: int,
    columns: list[str],
    repeat: int,
    flops: int | None = None,
) -> Row:
    """Every column of one row, loaded side by side and timed in turns, ``repeat`` rounds,
    keeping each column's fastest pass: on a shared machine load comes and goes, and turns
    spread it over the columns instead of landing on whichever ran then. ``flops``: of one
    pass, if already counted for this model and batch size."""
    # cuDNN's plan cache is per thread: the heuristics column runs on a thread of its own, or
    # it would reuse the plans the autotuned columns found and measure those instead.
    with ThreadPoolExecutor(1) as own_thread:

        def on_its_thread(column: str, work: Callable[[], _T]) -> _T:
            return own_thread.submit(work).result() if column == HEURISTICS else work()

        loaded: dict[str, tuple[TiledRestorer, float]] = {}
        for column in columns:
            start = time.perf_counter()
            settings = _settings(device, precision, batch_size, column)
            restorer = on_its_thread(
                column, functools.partial(load_restorer, entry, path, device, settings)
            )
            assert isinstance(restorer, TiledRestorer)
            loaded[column] = restorer, time.perf_counter() - start
        first = next(iter(loaded.values()))[0]
        shape = full_batches_shape(first.tiles, first.size)
        assert shape is not None, "catalogue models are tiled"
        image = torch.rand((1, 3, *shape), generator=torch.Generator().manual_seed(0)).to(device)
        passes = {column: ModelPass(restorer, image) for column, (restorer, _) in loaded.items()}
        for column, model in passes.items():
            if flops is None and column == "eager":
                flops = model.flops()  # warms up as well
            else:
                on_its_thread(column, model.run)  # warm-up: allocator, caches
        best = {column: float("inf") for column in columns}
        for _ in range(repeat):
            for column, model in passes.items():
                seconds = on_its_thread(column, functools.partial(model.seconds, 1))
                best[column] = min(best[column], seconds)
    assert flops is not None
    pixels = passes["eager"].tile_pixels
    cells = []
    for column, (restorer, load_s) in loaded.items():
        compiled = restorer.accelerated is not None and restorer.accelerated.compiled
        cells.append(Cell(column, pixels / 1e6 / best[column], best[column], load_s, compiled))
    return Row(entry.name, precision, batch_size, shape[0], flops, cells)


def run(
    *,
    weights: dict[str, Path],
    device: torch.device,
    precisions: list[str],
    batch_sizes: list[int],
    choices: list[Acceleration],
    tile: int | None = None,
    repeat: int = 3,
    peak: float | None = None,
    console: Console | None = None,
) -> Report:
    """Measure every model (``weights``: catalogue name to weights file) x precision x batch
    size x choice. ``eager`` is always measured: speed-ups are over it."""
    columns: list[str] = ["eager", *(c for c in choices if c != "eager")]
    if device.type == "cuda":
        columns.append(HEURISTICS)
    rows: list[Row] = []
    recommendations: dict[str, Row] = {}
    # Every column and row is another graph of the same forward: more than the eight dynamo
    # keeps per function by default (a worker needs one or two per architecture).
    with torch._dynamo.config.patch(recompile_limit=256):
        for name, path in weights.items():
            entry = CATALOGUE[name]
            if tile is not None:
                entry = dataclasses.replace(entry, tile=tile)
            mine = _model_rows(
                entry, path, device, precisions, batch_sizes, columns, repeat, console
            )
            rows.extend(mine)
            recommendations[name] = _recommendation_row(name, mine, device)
    return Report(str(device), _label(device), peak_tflops(device, peak), rows, recommendations)


def _model_rows(
    entry: ModelEntry,
    path: Path,
    device: torch.device,
    precisions: list[str],
    batch_sizes: list[int],
    columns: list[str],
    repeat: int,
    console: Console | None,
) -> list[Row]:
    rows = []
    for batch_size in batch_sizes:
        flops: int | None = None  # counted once per batch size: the precision does not change it
        for precision in precisions:
            if precision != "fp32" and precision not in entry.precisions:
                continue
            row = measure_row(entry, path, device, precision, batch_size, columns, repeat, flops)
            flops = row.flops_per_pass
            rows.append(row)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if console is not None:  # progress: a GPU run compiles for many minutes
                console.print(
                    f"{entry.name} {precision} batch {batch_size}: "
                    + ", ".join(
                        f"{c.column} {c.megapixels_per_s:.3f} MP/s (load {c.load_s:.1f} s)"
                        for c in row.cells
                    )
                )
    return rows


def _recommendation_row(name: str, rows: list[Row], device: torch.device) -> Row:
    """The row a worker's defaults meet: the precision ``auto`` picks on ``device`` (else the
    first measured) and the default tiles per batch (else the largest measured)."""
    mine = [row for row in rows if row.model == name]
    auto = PRECISION_NAMES[half_dtype(CATALOGUE[name], device)]
    precision = auto if any(row.precision == auto for row in mine) else mine[0].precision
    mine = [row for row in mine if row.precision == precision]
    default_batch = Settings().tile_batch_size
    batches = {row.batch_size for row in mine}
    batch = default_batch if default_batch in batches else max(batches)
    return next(row for row in mine if row.batch_size == batch)


def _label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=pick_device().type)
    parser.add_argument("--models", default="darkroom-night,mirnet-lol,nafnet-gopro,scunet-real")
    parser.add_argument("--precisions", help="default: fp32,bf16 (and fp16 on CUDA)")
    parser.add_argument("--batch-sizes", default="1,4")
    parser.add_argument("--choices", default=",".join(ACCELERATIONS))
    parser.add_argument("--tile", type=int, help="default: each model's catalogue tile")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, help="for a GPU benchmarks.flops lacks")
    parser.add_argument("--tiny", action="store_true", help="a small random MIRNet as mirnet-lol")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = args.precisions or ("fp32,bf16,fp16" if device.type == "cuda" else "fp32,bf16")
    choices = [choice for choice in args.choices.split(",") if choice]
    unknown = set(choices) - set(ACCELERATIONS)
    if unknown:
        parser.error(f"unknown choices {sorted(unknown)}; known: {', '.join(ACCELERATIONS)}")
    console = Console(width=None if sys.stdout.isatty() else 200)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.tiny:
            from benchmarks.stack import tiny_mirnet

            weights = {"mirnet-lol": tiny_mirnet(folder, features=16) / "mirnet-lol.pt"}
        else:
            weights = {name: checkpoint(name, folder) for name in args.models.split(",")}
        report = run(
            weights=weights,
            device=device,
            precisions=precisions.split(","),
            batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
            choices=choices,  # type: ignore[arg-type]
            tile=args.tile,
            repeat=args.repeat,
            peak=args.peak_tflops,
            console=console,
        )
    print_acceleration(report, console)


if __name__ == "__main__":
    main()
