"""The GPU check's memory and precision checks: out-of-memory release and the warm-up's
out-of-memory, halving the tile, bf16, non-finite outputs, several GPUs, the exposure sums."""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from benchmarks.gpu_common import CUDA_ONLY, Check, allocated, synchronize
from restoration.architectures.nafnet_night import NightNAFNet
from restoration.device.acceleration import accelerate
from restoration.device.batching import DeviceBatcher
from restoration.device.precision import autocast, autocast_dtype, finite_or_float32, native_bf16
from restoration.padding import SizeRequirements
from restoration.tile_plan import TileConfig
from restoration.tiling import restore_with_oom_fallback, tiled_forward
from shared.config import Acceleration, Settings
from workers.supervisor import resolve_gpus


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
    before = allocated(device)
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
    synchronize(device)
    after = allocated(device)
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
