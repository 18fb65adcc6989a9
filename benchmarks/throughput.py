"""How close Darkroom runs to the model's own speed, on the same model and photos, in one run.

(a) The raw model limit: the model's forward passes alone, on the tiles the worker cuts from a
    photo, already on the device (plus the whole-photo pass a model needs, such as the night
    model's exposure): photos per second nothing around the model could beat, and the TFLOP/s
    that is (with the share of the GPU's peak where known: ``benchmarks.flops``).
(b) Darkroom end to end: the photos are objects in the S3 endpoint (moto), submitted as one
    batch through the API (in-process), run by ``darkroom worker`` processes holding 1, then N
    jobs at once (``--concurrency 1,3``), each job's status and stage times in PostgreSQL.
    Printed next to (a) with their ratio, per-stage mean times, the share of the wall time the
    model was busy (the device seconds charged to the jobs, summed, over the wall) and, on CUDA
    with ``pynvml``, the GPU's own utilisation sampled every 0.1 s. ``--device-batch-tiles N``
    runs each concurrency above 1 a second time with passes merged across jobs up to N tiles.
(c) The reference project's recipe (dblasko's MIRNet inference): one photo at a time, shortest
    side resized to 400 px and cropped to a multiple of 8, one fp32 forward pass, on the same
    photos and model. Fast, but its output is a 400 px thumbnail, not the photo.

Photos are 12-megapixel JPEGs (4000x3000) made from the night samples in ``samples/``
(upscaled, with sensor-like noise so they compress like camera files). Run::

    .venv/bin/python -m benchmarks.throughput [--device cuda] [--model darkroom-night]
        [--photos 8] [--megapixels 12] [--concurrency 1,3] [--device-batch-tiles 12] [--tiny]
        [--peak-tflops N]

``--tiny`` serves ``mirnet-lol`` with a small random-weight MIRNet: a model cheap enough on a
CPU that the stages around it matter. Other non-bundled models get random weights at their
published size (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import gc
import io
import math
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image
from rich.console import Console

from benchmarks.flops import peak_tflops
from benchmarks.models import ModelPass
from benchmarks.reports import print_throughput
from benchmarks.stack import Finished, Stack, local_stack, submit_batch, tiny_mirnet, wait_batch
from imaging.decoding import decode
from restoration.device.acceleration import to_device
from restoration.device.placement import pick_device
from restoration.loading import load_restorer
from restoration.restorers import TiledRestorer
from shared.catalogue import CATALOGUE, ModelEntry

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
REFERENCE_SIDE = 400
"""The reference project resizes the shortest side to this and crops to a multiple of 8."""


def make_photos(count: int, megapixels: float, seed: int = 0) -> list[bytes]:
    """``count`` 4:3 JPEGs of about ``megapixels`` from the night samples, upscaled, with
    per-pixel noise added afterwards so the files are as large as a camera's."""
    width = int(round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    height = int(round(width * 3 / 4))
    sources = sorted(SAMPLES.glob("*.jpg"))
    rng = np.random.default_rng(seed)
    photos = []
    for index in range(count):
        with Image.open(sources[index % len(sources)]) as source:
            base = source.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        pixels = np.asarray(base, dtype=np.int16)
        noise = rng.integers(-6, 7, size=pixels.shape, dtype=np.int16)
        noisy = Image.fromarray((pixels + noise).clip(0, 255).astype(np.uint8))
        out = io.BytesIO()
        noisy.save(out, "JPEG", quality=92)
        photos.append(out.getvalue())
    return photos


@dataclass(frozen=True)
class Rate:
    photos_per_s: float
    megapixels_per_s: float
    tflops_per_s: float | None = None
    """Counted for the raw model limit only."""


def raw_model_limit(restorer: TiledRestorer, photo: bytes, repeat: int) -> Rate:
    """Forward passes alone on the photo's tiles (``benchmarks.models.ModelPass``); the first
    pass, not timed, warms up and counts the FLOPs."""
    decoded = decode(photo, max_pixels=10**9)
    height, width = decoded.pixels.shape[:2]
    model = ModelPass(restorer, to_device(decoded.pixels, restorer.device))
    flops = model.flops()
    seconds = model.seconds(repeat)
    return Rate(1 / seconds, height * width / 1e6 / seconds, flops / 1e12 / seconds)


def reference_recipe(restorer: TiledRestorer, photos: list[bytes]) -> tuple[Rate, float]:
    """One photo at a time: decode, shortest side to 400 px, crop to a multiple of 8, one fp32
    forward pass, back to the host. Returns the rate in input photos (and megapixels of the
    *input*) and the megapixels each output has."""
    device = restorer.device
    out_megapixels = 0.0
    pixels_in = 0
    start = time.perf_counter()
    for data in photos:
        with Image.open(io.BytesIO(data)) as opened:
            rgb = opened.convert("RGB")
        pixels_in += rgb.width * rgb.height
        scale = REFERENCE_SIDE / min(rgb.size)
        size = (round(rgb.width * scale), round(rgb.height * scale))
        small = rgb.resize(size, Image.Resampling.BILINEAR)
        small = small.crop((0, 0, small.width // 8 * 8, small.height // 8 * 8))
        array = np.asarray(small, dtype=np.float32) / 255.0
        image = torch.from_numpy(array.transpose(2, 0, 1).copy())[None].to(device)
        with torch.inference_mode():
            tiles_from, forward = restorer.forward_for(image)
            restored = forward(tiles_from, None).clamp(0, 1).cpu()
        out_megapixels = restored.shape[-1] * restored.shape[-2] / 1e6
    seconds = time.perf_counter() - start
    return Rate(len(photos) / seconds, pixels_in / 1e6 / seconds), out_megapixels


class GpuSampler:
    """The GPU's utilisation (NVML, device-wide) sampled while a block runs; None where NVML
    is not available (no CUDA, or no ``pynvml``)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.samples: list[float] = []

    @contextmanager
    def sampling(self) -> Iterator[None]:
        if self.device.type != "cuda":
            yield
            return
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(0.1):
                try:
                    self.samples.append(float(torch.cuda.utilization(self.device)))
                except Exception:  # no pynvml, or NVML not readable in this container
                    return

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


@dataclass(frozen=True)
class EndToEnd:
    concurrency: int
    device_batch_tiles: int
    """Most tiles in a pass merged across jobs; 0: each job holds the device alone."""
    finished: Finished
    rate: Rate
    model_busy: float
    """Share of the wall time the model's device was busy: the jobs' device seconds (all of
    their restore stage, or their share of passes merged across jobs) summed, over the wall."""
    gpu_utilisation: float | None

    @property
    def label(self) -> str:
        merged = f", passes merged up to {self.device_batch_tiles} tiles"
        return f"worker concurrency {self.concurrency}{merged if self.device_batch_tiles else ''}"


def end_to_end(
    stack: Stack,
    client: TestClient,
    keys: list[str],
    warm_up_key: str,
    megapixels: float,
    model: str,
    concurrency: int,
    device: torch.device,
    device_batch_tiles: int = 0,
) -> EndToEnd:
    """A batch of every photo through a worker holding ``concurrency`` jobs, after a warm-up
    job on a photo of one tile (same tile shape: kernels chosen, memory allocated) that is not
    counted."""
    family = CATALOGUE[model].family if model in CATALOGUE else "spandrel"
    env = {
        "DARKROOM_PRELOAD_MODELS": f'["{model}"]',
        "DARKROOM_DEVICE": str(device),
        "DARKROOM_DEVICE_BATCH_TILES": str(device_batch_tiles),
    }
    with stack.worker(concurrency, family, **env):
        warm = submit_batch(client, [warm_up_key], model)
        wait_batch(stack.sessions, warm, time.perf_counter(), timeout=3600)
        sampler = GpuSampler(device)
        with sampler.sampling():
            started = time.perf_counter()
            batch_id = submit_batch(client, keys, model)
            finished = wait_batch(stack.sessions, batch_id, started, timeout=24 * 3600)
    count = sum(finished.counts.values())
    return EndToEnd(
        concurrency,
        device_batch_tiles,
        finished,
        Rate(count / finished.seconds, count * megapixels / finished.seconds),
        finished.device_s / finished.seconds,
        sampler.mean,
    )


@dataclass(frozen=True)
class Report:
    device: str
    model: str
    photos: int
    megapixels: float
    raw: Rate
    runs: list[EndToEnd]
    reference: Rate
    reference_out_megapixels: float
    peak_tflops: float | None = None
    """The GPU's dense bf16/fp16 peak, where known."""

    @property
    def reference_label(self) -> str:
        return (
            f"(c) reference recipe: one at a time, {REFERENCE_SIDE} px, fp32 "
            f"(output {self.reference_out_megapixels:.2f} MP)"
        )


def _weights(model: str, tiny: bool, folder: Path) -> tuple[ModelEntry, Path | None]:
    """The catalogue entry and the folder of its weights (None: shipped with the package)."""
    entry = CATALOGUE[model]
    if tiny:
        tiny_mirnet(folder, features=16)
        return entry, folder
    if entry.bundled:
        return entry, None
    from benchmarks.models import checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    checkpoint(model, folder)
    return entry, folder


def run(
    stack: Stack,
    *,
    model: str,
    model_dir: Path | None,
    photos: list[bytes],
    megapixels: float,
    concurrency: list[int],
    device: torch.device,
    repeat: int,
    peak: float | None = None,
    device_batch_tiles: int = 0,
) -> Report:
    from api.app import create_app
    from shared.catalogue import BUNDLED_WEIGHTS

    entry = CATALOGUE[model]
    path = (model_dir / entry.weights_file) if model_dir else BUNDLED_WEIGHTS / entry.weights_file
    restorer = load_restorer(entry, path, device, stack.settings)
    assert isinstance(restorer, TiledRestorer)
    raw = raw_model_limit(restorer, photos[0], repeat)
    fp32_only = stack.settings.model_copy(update={"precision": "fp32"})
    fp32 = load_restorer(entry, path, device, fp32_only)
    assert isinstance(fp32, TiledRestorer)
    reference, out_megapixels = reference_recipe(fp32, photos)
    del restorer, fp32
    # An accelerated module and its forward refer to each other: only the collector frees
    # them, and the workers started next need the memory.
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    prefix = f"photos-{uuid.uuid4().hex[:6]}/"
    objects = {f"{prefix}{i:03d}.jpg": data for i, data in enumerate(photos)}
    stack.put_objects(objects)
    keys = list(objects)
    side = entry.tile or 512
    warm_up_key = f"{prefix}warm-up.jpg"
    # 4:3 with the short side one tile: full-size tiles, as in the 12-MP photos.
    stack.put_objects({warm_up_key: make_photos(1, side * side * 4 / 3 / 1e6)[0]})
    runs = []
    with TestClient(create_app(stack.settings)) as client:
        for n in concurrency:
            for tiles in [0, device_batch_tiles] if n > 1 and device_batch_tiles > 1 else [0]:
                runs.append(
                    end_to_end(
                        stack, client, keys, warm_up_key, megapixels, model, n, device, tiles
                    )
                )
    return Report(
        str(device),
        model,
        len(photos),
        megapixels,
        raw,
        runs,
        reference,
        out_megapixels,
        peak_tflops(device, peak),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=pick_device().type)
    parser.add_argument("--model", default="darkroom-night")
    parser.add_argument("--tiny", action="store_true", help="a small random MIRNet as mirnet-lol")
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--concurrency", default="1,3")
    parser.add_argument(
        "--device-batch-tiles",
        type=int,
        default=0,
        help="also run each concurrency above 1 with passes merged across jobs up to N tiles",
    )
    parser.add_argument("--repeat", type=int, default=3, help="raw-limit repetitions")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--peak-tflops", type=float, help="the GPU's peak, where benchmarks.flops does not know it"
    )
    args = parser.parse_args()
    model = "mirnet-lol" if args.tiny else args.model
    device = torch.device(args.device)
    console = Console(width=None if sys.stdout.isatty() else 150)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    console.print(
        f"device {label}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
        f"model {model}{' (small random MIRNet)' if args.tiny else ''}"
    )
    photos = make_photos(args.photos, args.megapixels)
    with Image.open(io.BytesIO(photos[0])) as first:
        megapixels = first.width * first.height / 1e6
        console.print(
            f"{len(photos)} JPEGs of {first.width}x{first.height}, "
            f"{np.mean([len(p) for p in photos]) / 1e6:.1f} MB each"
        )
    with local_stack(args.broker_url, None, DARKROOM_DEVICE=str(device)) as stack:
        _, model_dir = _weights(model, args.tiny, stack.workdir / "models")
        if model_dir is not None:
            stack = stack.with_env(DARKROOM_MODEL_DIR=str(model_dir))
        report = run(
            stack,
            model=model,
            model_dir=model_dir,
            photos=photos,
            megapixels=megapixels,
            concurrency=[int(n) for n in args.concurrency.split(",")],
            device_batch_tiles=args.device_batch_tiles,
            device=device,
            repeat=args.repeat,
            peak=args.peak_tflops,
        )
    print_throughput(report, console)


if __name__ == "__main__":
    main()
