"""The one check to run the first time a GPU is at hand: every CUDA path Darkroom has, and each
defect issue #15 found by reading them, measured in one run with one report.

    scripts/gpu-check.sh [--device cuda|cpu] [--quick] [--out gpu-check.json]

Each check prints a line and adds a record to the report (a JSON list): the defect it covers,
``ok`` (whether what it measured is what the fixed code must give), and its figures. On a CPU
(``--device cpu --quick``, which the test suite runs so the script cannot rot) the checks run
the same code paths on the CPU with simulated out-of-memory errors; figures that only a GPU has
(memory allocated, bf16 units, cuDNN plans) say ``"cuda only"``. The exit status is 1 when any
check is not ok. Figures go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restoration.architectures.nafnet_night import NightNAFNet
from restoration.device.acceleration import accelerate
from restoration.device.batching import DeviceBatcher, DeviceThread
from restoration.device.precision import autocast, autocast_dtype, finite_or_float32, native_bf16
from restoration.padding import SizeRequirements
from restoration.restorers import load_restorer
from restoration.tile_plan import TileConfig
from restoration.tiling import restore_with_oom_fallback, tiled_forward
from shared.catalogue import BUNDLED_WEIGHTS, CATALOGUE
from shared.config import Acceleration, Settings
from workers.gpus import resolve_gpus

CUDA_ONLY = "cuda only"


@dataclass
class Check:
    name: str
    defect: str
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device: torch.device) -> int | str:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else CUDA_ONLY


def check_oom_release(device: torch.device, quick: bool) -> Check:
    """Defect 1: after out-of-memory passes shared by two jobs, nothing of the failed attempts
    stays alive once the jobs have retried (weak references to their tiles, with the cycle
    collector off; device memory before and after on CUDA)."""
    side = 64 if quick else 1024
    failed: list[weakref.ref[torch.Tensor]] = []
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).to(device).eval()

    def model(batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[-1] > side // 2:
            failed.append(weakref.ref(batch))
            if device.type == "cuda":
                torch.empty(1 << 40, device=device)  # a real allocation failure
            raise torch.OutOfMemoryError("out of memory (simulated on the CPU)")
        return conv(batch)

    image = torch.rand(1, 3, side, side, device=device)
    before = _allocated(device)
    gc.disable()
    try:
        with DeviceBatcher(device, max_tiles=8) as batcher, ThreadPoolExecutor(2) as pool:

            def job() -> tuple[int, ...]:
                runner = batcher.runner(wait_check_s=0.01)

                def run(config: TileConfig) -> torch.Tensor:
                    return tiled_forward(
                        lambda batch: runner.forward(("check", None), model, batch),
                        image,
                        config=config,
                    )

                config = TileConfig(tile=side, overlap=8, batch_size=2, min_tile=8)
                return tuple(restore_with_oom_fallback(run, config).shape)

            shapes = [f.result() for f in [pool.submit(job), pool.submit(job)]]
        alive = sum(ref() is not None for ref in failed)
    finally:
        gc.enable()
    _synchronize(device)
    after = _allocated(device)
    return Check(
        "out-of-memory retry frees the failed attempt",
        "1",
        bool(failed) and alive == 0 and len(set(shapes)) == 1,
        {
            "failed passes": len(failed),
            "their tiles still alive without the collector": alive,
            "bytes allocated before": before,
            "bytes allocated after": after,
        },
    )


def check_bf16(device: torch.device, quick: bool) -> Check:
    """Defect 5: bf16 only where the job's GPU has bf16 units."""
    if device.type != "cuda":
        return Check(
            "bf16 only with bf16 units",
            "5",
            autocast_dtype(device, supports_half=True, supports_bfloat16=True) is None,
            {"auto precision on cpu": "float32", "capability": CUDA_ONLY},
        )
    chosen = autocast_dtype(device, supports_half=True, supports_bfloat16=True)
    capability = torch.cuda.get_device_capability(device)
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    expected = torch.bfloat16 if native and capability[0] >= 8 else torch.float16
    return Check(
        "bf16 only with bf16 units",
        "5",
        chosen == expected and native_bf16(device) == (expected == torch.bfloat16),
        {
            "capability": list(capability),
            "bf16 native": native,
            "bf16 with emulation": torch.cuda.is_bf16_supported(),
            "chosen": str(chosen),
        },
    )


def check_gpus(device: torch.device, quick: bool) -> Check:
    """Defect 7: ``--gpus all`` under a scheduler's ``CUDA_VISIBLE_DEVICES`` keeps its list."""
    given = resolve_gpus("all", {"CUDA_VISIBLE_DEVICES": "2,3"})
    figures: dict[str, Any] = {"under CUDA_VISIBLE_DEVICES=2,3": given}
    if device.type == "cuda":
        figures["all on this machine"] = resolve_gpus("all", {})
    return Check("--gpus all honours CUDA_VISIBLE_DEVICES", "7", given == ["2", "3"], figures)


def overflowing(device: torch.device) -> torch.nn.Module:
    """Finite in float32, past fp16's largest value (65504) in between."""
    first, second = torch.nn.Conv2d(3, 3, 1, bias=False), torch.nn.Conv2d(3, 3, 1, bias=False)
    torch.nn.init.constant_(first.weight, 3e4)
    torch.nn.init.constant_(second.weight, 1e-5)
    return torch.nn.Sequential(first, second).to(device).eval()


def check_finite(device: torch.device, quick: bool) -> Check:
    """Defect 8: a pass that overflows fp16 (65504) runs again in float32."""
    module = overflowing(device)
    x = torch.full((1, 3, 16, 16), 0.9, device=device)

    def run(dtype: torch.dtype | None) -> torch.Tensor:
        with torch.inference_mode(), autocast(dtype, device):
            return module(x).float()

    overflowed = not bool(torch.isfinite(run(torch.float16)).all())
    out = finite_or_float32(run, torch.float16, "overflowing")
    ok = overflowed and bool(torch.isfinite(out).all())
    return Check("fp16 overflow reruns in float32", "8", ok, {"fp16 overflowed": overflowed})


class OutOfMemoryOnce(torch.nn.Module):
    """A convolution whose first call fails with ``error()``, as a warm-up out of memory."""

    def __init__(self, error: Callable[[], BaseException]) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.error = error
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            raise self.error()
        return self.conv(x)


def check_warm_up_oom(device: torch.device, quick: bool) -> Check:
    """Defect 9: an out-of-memory error during the warm-up (raised or wrapped by the compiler)
    leaves no shape marked warm."""

    def wrapped() -> BaseException:
        error = RuntimeError("backend failed")
        error.__cause__ = torch.OutOfMemoryError("simulated")
        return error

    module = OutOfMemoryOnce(wrapped).to(device).eval()
    mode: Acceleration = "channels_last" if quick else "compile"
    accelerated = accelerate(module, device, mode, Settings(), name="oom-check")
    assert accelerated is not None
    x = torch.rand(1, 3, 32, 32, device=device)
    raised = ""
    with accelerated.warming_up():
        try:
            accelerated(x)
        except Exception as exc:  # the wrapped error, or OutOfMemoryError from the compiler
            raised = type(exc).__name__
    marked = len(accelerated.warm_shapes)
    return Check(
        "a warm-up out of memory marks nothing warm",
        "9",
        marked == 0 and bool(raised),
        {"mode": mode, "raised": raised, "warm shapes": marked},
    )


def check_halving(device: torch.device, quick: bool) -> Check:
    """Defect 10: halving never retries a tile the model's minimum makes the same."""
    tried: list[tuple[int | None, int]] = []

    def run(config: TileConfig) -> torch.Tensor:
        tried.append((config.tile, config.batch_size))
        raise torch.OutOfMemoryError("simulated")

    with contextlib.suppress(torch.OutOfMemoryError):
        restore_with_oom_fallback(
            run, TileConfig(tile=1024, batch_size=4, min_tile=64), size=SizeRequirements(300)
        )
    return Check(
        "halving skips shapes the model gets anyway",
        "10",
        tried == [(1024, 4), (512, 4), (256, 4), (256, 1)],
        {"tried": tried},
    )


def check_exposure_sums(device: torch.device, quick: bool) -> Check:
    """Defect 11: the night model's exposure sums stay float32 under bf16 and fp16 autocast."""
    model = NightNAFNet(width=4, enc_blocks=[1] * 4, middle_blocks=1, dec_blocks=[1] * 4)
    model = model.to(device).eval()
    bottleneck = torch.ones(1, 64, 500, 560, device=device)
    figures: dict[str, Any] = {}
    ok = True
    for dtype in (torch.bfloat16, torch.float16):
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
            sums, counts = model._gain_stats(bottleneck.to(dtype))
        figures[str(dtype)] = {"dtype": str(sums.dtype), "count": counts[0].item()}
        ok = ok and sums.dtype == torch.float32 and counts[0].item() == 280_000
    return Check("exposure statistics in float32", "11", ok, figures)


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
                _synchronize(device)
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
        _synchronize(device)
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
            _synchronize(device)
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


CHECKS: list[Callable[[torch.device, bool], Check]] = [
    check_compile_stall,
    check_merged_passes,
    check_large_output,
    check_oom_release,
    check_bf16,
    check_gpus,
    check_finite,
    check_warm_up_oom,
    check_halving,
    check_exposure_sums,
    check_second_thread,
    check_precisions,
    check_model_speeds,
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite's run)")
    parser.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        # The comparisons need float32 to be float32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    records = []
    for check in CHECKS:
        start = time.perf_counter()
        try:
            result = check(device, args.quick)
        except Exception as exc:
            result = Check(check.__name__, "?", False, {"error": f"{type(exc).__name__}: {exc}"})
        result.figures["check seconds"] = round(time.perf_counter() - start, 2)
        records.append(asdict(result))
        print(
            f"{'ok  ' if result.ok else 'FAIL'} [{result.defect}] {result.name}: {result.figures}"
        )
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "quick": args.quick,
        "checks": records,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {args.out}")
    return 0 if all(record["ok"] for record in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
