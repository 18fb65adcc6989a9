"""The GPU check's pass checks: each model family's precisions, a second thread's first pass,
outputs larger than the device, merged passes, model speeds, a compile beside loaded models."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.gpu_common import CUDA_ONLY, Check, synchronize
from restoration.device.batching import DeviceThread
from restoration.loading import load_restorer
from restoration.padding import SizeRequirements
from restoration.tile_plan import TileConfig
from shared.catalogue import BUNDLED_WEIGHTS, CATALOGUE
from shared.config import Settings


def _family_weights(folder: Path) -> dict[str, Path]:
    """One model per catalogue family, with weights this machine has: darkroom-night's shipped
    file, and seeded random weights at small sizes for MIRNet, a spandrel NAFNet and Zero-DCE
    (precision against float32 depends on the arithmetic, not on trained weights)."""
    from spandrel.architectures.NAFNet import NAFNet

    from restoration.architectures.mirnet import MIRNet, save_mirnet_checkpoint
    from restoration.architectures.zero_dce import ZeroDCE

    torch.manual_seed(0)
    save_mirnet_checkpoint(MIRNet(num_features=16, number_msrb=1, number_rrg=1), folder / "m.pt")
    torch.save(
        NAFNet(width=16, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]).state_dict(), folder / "n.pth"
    )
    torch.save(ZeroDCE().state_dict(), folder / "z.pth")
    night = CATALOGUE["darkroom-night"]
    return {
        "darkroom-night": BUNDLED_WEIGHTS / night.weights_file,
        "mirnet-lol": folder / "m.pt",
        "nafnet-gopro": folder / "n.pth",
        "zero-dce": folder / "z.pth",
    }


def check_precisions(device: torch.device, quick: bool) -> Check:
    """bf16/fp16 against fp32 per model family (PSNR of the reduced-precision output against
    float32's, through the path jobs take), and that every output is finite."""
    import dataclasses
    import tempfile

    side = 128 if quick else 1024
    rng = np.random.default_rng(0)
    pixels = (rng.random((side, side, 3), dtype=np.float32) * 0.2).astype(np.float32)
    figures: dict[str, Any] = {}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in _family_weights(Path(tmp)).items():
            entry = dataclasses.replace(CATALOGUE[name], precisions=("fp32", "bf16", "fp16"))
            reference = None
            rows: dict[str, Any] = {}
            for precision in ("fp32", "bf16", "fp16"):
                if precision == "fp16" and device.type != "cuda":
                    continue
                settings = Settings(device=device.type, precision=precision)
                restorer = load_restorer(entry, path, device, settings)
                start = time.perf_counter()
                out = restorer.restore(pixels)
                synchronize(device)
                seconds = round(time.perf_counter() - start, 3)
                if reference is None:
                    reference = out
                    rows[precision] = {"seconds": seconds}
                    continue
                error = float(np.mean((out - reference) ** 2))
                psnr = 10 * math.log10(1 / error) if error > 0 else math.inf
                rows[precision] = {"seconds": seconds, "psnr vs fp32": round(psnr, 2)}
                ok = ok and bool(np.isfinite(out).all()) and psnr > 30
            figures[f"{entry.family} ({name})"] = rows
    return Check("reduced precision against float32, per family", "8, 11", ok, figures)


def check_second_thread(device: torch.device, quick: bool) -> Check:
    """Defect 4: the first pass of a warmed model on a new thread, as a pool thread meets it
    (on CUDA cuDNN's plan cache is per thread), next to a new job's pass through the device
    thread a CUDA worker uses."""
    conv = torch.nn.Sequential(*(torch.nn.Conv2d(16, 16, 3, padding=1) for _ in range(4)))
    conv = conv.to(device).eval()
    x = torch.rand(4, 16, 64 if quick else 512, 64 if quick else 512, device=device)

    def timed() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            conv(x)
        synchronize(device)
        return time.perf_counter() - start

    timed()
    here = timed()
    seconds: list[float] = []
    thread = threading.Thread(target=lambda: seconds.append(timed()))
    thread.start()
    thread.join()
    # What a worker does instead: every pass on one device thread, warmed there.
    device_thread = DeviceThread()
    try:
        device_thread.runner().alone(timed)
        via: list[float] = []
        job = threading.Thread(target=lambda: via.append(device_thread.runner().alone(timed)))
        job.start()
        job.join()
    finally:
        device_thread.close()
    return Check(
        "first pass on a new thread",
        "4",
        True,
        {
            "warmed thread s": round(here, 4),
            "new thread s": round(seconds[0], 4),
            "new job through the device thread s": round(via[0], 4),
        },
    )


def check_large_output(device: torch.device, quick: bool) -> Check:
    """Defect 6: an x4 output too large for the device is accumulated and transposed on the
    host: peak device memory stays far below the output's size."""
    from restoration.restorers import TiledRestorer

    class Upscale4(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 48, 3, padding=1)

        def forward(self, x: torch.Tensor, task: str | None = None) -> torch.Tensor:
            return torch.nn.functional.pixel_shuffle(self.conv(x), 4)

    network = Upscale4().to(device).eval()
    side = 256 if quick or device.type != "cuda" else 8192
    output_bytes = 3 * (4 * side) ** 2 * 4
    restorer = TiledRestorer(
        "upscale-x4",
        lambda batch, task: network(batch),
        device,
        size=SizeRequirements(),
        scale_for=lambda task: 4,
        tiles=TileConfig(tile=512, overlap=16, batch_size=2),
        nbytes=0,
    )
    pixels = np.random.default_rng(0).random((side, side, 3), dtype=np.float32)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out = restorer.restore(pixels)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else CUDA_ONLY
    ok = out.shape == (4 * side, 4 * side, 3)
    if isinstance(peak, int):
        free = torch.cuda.mem_get_info(device)[0]
        ok = ok and (output_bytes < 0.25 * free or peak < output_bytes)
    return Check(
        "large x4 output on the host",
        "6",
        ok,
        {"output bytes": output_bytes, "peak device bytes": peak},
    )


def check_merged_passes(device: torch.device, quick: bool) -> Check:
    """Defect 3: with jobs merged into one pass, the warm-up compiles and tunes the merged
    shape too (on CUDA a merged pass is padded to ``device_batch_tiles`` rows)."""
    if device.type != "cuda":
        return Check("merged passes run warmed", "3", True, {"warm shapes": CUDA_ONLY})
    import tempfile

    from spandrel.architectures.NAFNet import NAFNet

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nafnet.pth"
        torch.save(NAFNet(width=16, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]).state_dict(), path)
        entry = CATALOGUE["nafnet-gopro"]
        settings = Settings(
            acceleration="compile",
            device="cuda",
            worker_concurrency=2,
            tile_batch_size=2,
            device_batch_tiles=8,
        )
        start = time.perf_counter()
        restorer = load_restorer(entry, path, device, settings)
        seconds = time.perf_counter() - start
    accelerated = getattr(restorer, "accelerated", None)
    warm = [str(sig) for sig in accelerated.warm_shapes] if accelerated else []
    ok = any("((8, 3" in sig for sig in warm)  # a warmed batch of 8 tiles
    return Check(
        "merged passes run warmed",
        "3",
        ok,
        {"warm-up s": round(seconds, 1), "warm shapes": len(warm)},
    )


def check_model_speeds(device: torch.device, quick: bool) -> Check:
    """``benchmarks.models`` for darkroom-night: megapixels per second per precision through
    the tiled restorer, on the shape its warm-up compiled (defect 12)."""
    from benchmarks.models import measure

    entry = CATALOGUE["darkroom-night"]
    size, repeat = (128, 1) if quick else (1024, 3)
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    rates = {
        precision: round(
            measure(entry, BUNDLED_WEIGHTS / entry.weights_file, device, precision, size, repeat),
            3,
        )
        for precision in precisions
    }
    return Check("benchmarks.models (darkroom-night, MP/s)", "12", all(rates.values()), rates)


def check_compile_stall(device: torch.device, quick: bool) -> Check:
    """Defect 2: while one model compiles its warm-up in another thread, a loaded model's
    passes go on (before the fix they waited 21.8 s on the cuDNN flag's lock)."""
    if device.type != "cuda" or quick:
        return Check("a compile does not stall other models", "2", True, {"stall": CUDA_ONLY})
    import tempfile

    from spandrel.architectures.NAFNet import NAFNet

    torch.manual_seed(0)
    entry = CATALOGUE["nafnet-gopro"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nafnet.pth"
        torch.save(NAFNet(width=16, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]).state_dict(), path)
        loaded = load_restorer(entry, path, device, Settings(device="cuda"))
        pixels = np.random.default_rng(0).random((512, 512, 3), dtype=np.float32)

        def one_pass() -> float:
            start = time.perf_counter()
            loaded.restore(pixels)
            synchronize(device)
            return time.perf_counter() - start

        one_pass()
        baseline = min(one_pass() for _ in range(3))
        compiling = threading.Thread(
            target=load_restorer,
            args=(entry, path, device, Settings(device="cuda", acceleration="compile")),
        )
        compiling.start()
        during = []
        while compiling.is_alive():
            during.append(one_pass())
        compiling.join()
    worst = max(during, default=0.0)
    return Check(
        "a compile does not stall other models",
        "2",
        worst < max(2.0, 20 * baseline),
        {"pass s": round(baseline, 3), "worst pass during the compile s": round(worst, 3)},
    )
