"""Running a loaded model at the speed of the device: the tile shape compiled and autotuned,
channels-last layouts, pinned host memory.

A worker sees one input shape over and over: every full batch of full-size tiles of every
large photo. Two things pay off only for a shape seen again: ``torch.compile`` builds a graph
per shape (seconds to minutes), and cuDNN's benchmark mode times its algorithms per shape. So
both are confined to the shapes met while the model is *warmed up*, at load: a run on a photo
of whole batches of full tiles (``restoration.tiling.full_batches_shape``). Any other shape (a
photo shorter or narrower than a tile, a short last batch, the smaller tiles tried after running
out of memory, a call from another context) runs eager with cuDNN's heuristics: such photos
arrive in every size, and compiling for each would stall their jobs for a compile apiece and
grow the cache without bound. Graphs are built with ``dynamic=False``: one fixed shape each,
the fastest kernels, never rebuilt in a job. The price is paid at load: at worker start for
``DARKROOM_PRELOAD_MODELS``, else on the first job of a model (before its restore stage's timer
starts, but within its wall time), and again after the model cache drops the model; inductor's
on-disk cache makes a graph built before cost seconds instead of minutes.

A compiler failure (an operator inductor cannot lower, a missing C++ compiler, dynamo's limit
of graphs per function) is not a failed job: the model runs eager from then on and a warning
says why.

Channels-last (NHWC) is the layout tensor cores and oneDNN's convolutions prefer; weights are
converted once at load, inputs at every call.

On CUDA the photo goes to the device through pinned host memory with a non-blocking copy, and
the result comes back the same way, synchronised before numpy reads it. On a CPU nothing of
this applies and an ``eager`` model runs exactly as written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

from restoration.device.out_of_memory import is_out_of_memory
from shared.catalogue import ModelEntry
from shared.config import Acceleration, Settings

__all__ = [
    "AcceleratedForward",
    "accelerate",
    "choose",
    "to_device",
    "to_numpy",
]

log = logging.getLogger(__name__)

Signature = tuple[object, ...]
"""What a compiled graph is specialised to, as far as Darkroom's calls vary: shape, strides,
dtype and autograd state of each tensor argument, grad and inference mode, and autocast. Any
difference would make dynamo compile again, in the job."""

_CUDNN_FLAG = threading.RLock()
"""``torch.backends.cudnn.benchmark`` is one flag for the whole process: held while a call
runs with the flag set for it, so a warm-up in another thread cannot flip it meanwhile
(reentrant: a module may call itself)."""


def choose(entry: ModelEntry, settings: Settings, device: torch.device) -> Acceleration:
    """The entry's own choice, measured for the kind of device it runs on (a CPU and a GPU
    differ), unless ``DARKROOM_ACCELERATION`` sets one for all."""
    if settings.acceleration != "catalogue":
        return settings.acceleration
    return entry.cpu_acceleration if device.type == "cpu" else entry.acceleration


def _signature(device: torch.device, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Signature:
    def describe(value: Any) -> object:
        if isinstance(value, torch.Tensor):
            return (
                tuple(value.shape),
                value.stride(),
                value.dtype,
                value.requires_grad,
                value.is_inference(),
            )
        return repr(value)

    context = (
        torch.is_grad_enabled(),
        torch.is_inference_mode_enabled(),
        torch.is_autocast_enabled(device.type),
        torch.get_autocast_dtype(device.type),
    )
    return (context, *map(describe, args), *((k, describe(v)) for k, v in sorted(kwargs.items())))


def _channels_last(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


@contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    with _CUDNN_FLAG:
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = on
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = before


class AcceleratedForward:
    """Stands in for a module's ``forward``, so whoever calls the module (Darkroom's tiled
    path, spandrel's descriptor, IPT's patch runner) gets the fast path without knowing of it,
    and the module stays what they expect (its class, attributes and state dict unchanged).

    Inside :meth:`warming_up`, every call is compiled (when asked) and its signature recorded;
    afterwards only recorded signatures run compiled, with cuDNN's benchmark mode on CUDA.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        device: torch.device,
        *,
        name: str,
        compile: bool,
        channels_last: bool,
        cudnn_benchmark: bool,
    ) -> None:
        self.name = name
        self.module = module
        self.device = device
        self.channels_last = channels_last
        self._eager: Callable[..., Any] = module.forward
        self._compiled: Callable[..., Any] | None = (
            torch.compile(self._eager, dynamic=False) if compile else None
        )
        self._autotune = cudnn_benchmark and device.type == "cuda"
        self._warm: set[Signature] = set()
        self._warming = False
        if channels_last:
            module.to(memory_format=torch.channels_last)

    @property
    def compiled(self) -> bool:
        """Whether warmed-up shapes run a compiled graph (False after a compiler failure)."""
        return self._compiled is not None

    @property
    def warm_shapes(self) -> frozenset[Signature]:
        """The signatures met while warming up: the only ones compiled and autotuned."""
        return frozenset(self._warm)

    @contextmanager
    def warming_up(self) -> Iterator[None]:
        """Compile and autotune for every call made inside (once per process and model)."""
        self._warming = True
        try:
            yield
        finally:
            self._warming = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.channels_last:
            args = tuple(map(_channels_last, args))
            kwargs = {key: _channels_last(value) for key, value in kwargs.items()}
        signature = _signature(self.device, args, kwargs)
        warm = self._warming or signature in self._warm
        if self._warming and self._autotune and self._compiled is not None:
            # Compile first, outside the cuDNN flag's lock: the flag is one for the process,
            # and holding its lock for a compile (minutes) would stall every other model's
            # passes. The call below then only searches cuDNN's plans, briefly.
            self._run_compiled(args, kwargs)
        with _cudnn_benchmark(warm) if self._autotune else nullcontext():
            if warm and self._compiled is not None:
                result = self._run_compiled(args, kwargs)
            else:
                result = self._eager(*args, **kwargs)
        if self._warming:
            # Only once the call has succeeded: a warm-up that ran out of memory must not leave
            # a shape marked warm that was never compiled, to be compiled inside a job.
            self._warm.add(signature)
        return result

    def _run_compiled(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        assert self._compiled is not None
        if not self._warming:
            return self._compiled(*args, **kwargs)
        try:
            # Compiles on the first call of each signature. Dynamo keeps eight graphs per
            # function (for all models of one architecture together) and beyond that would
            # run eager in silence; failing makes that a fallback with a warning, as below.
            with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
                return self._compiled(*args, **kwargs)
        except Exception as exc:
            if is_out_of_memory(exc):
                # Not a compiler failure: the tiled path retries with smaller tiles, and the
                # model keeps its compiled path.
                if isinstance(exc, torch.OutOfMemoryError):
                    raise
                raise torch.OutOfMemoryError(f"out of memory while compiling: {exc}") from exc
            # Dynamo and inductor raise many types (BackendCompilerFailed, Unsupported, C++
            # build errors, FailOnRecompileLimitHit); all mean the same here. Eager then
            # decides: a genuine error in the model raises there too.
            log.warning(
                "torch.compile failed for model %s (%s); it runs eager", self.name, _reason(exc)
            )
            self._compiled = None
            return self._eager(*args, **kwargs)


def _reason(exc: BaseException) -> str:
    """The error on one line: dynamo puts the compiler's own error on the message's second."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:400] or 'no details'}"


def accelerate(
    module: torch.nn.Module,
    device: torch.device,
    choice: Acceleration,
    settings: Settings,
    *,
    name: str,
    can_compile: bool = True,
) -> AcceleratedForward | None:
    """Install ``choice`` on ``module`` (in place); None when there is nothing to do: an eager
    model on a CPU runs untouched. On CUDA every model gets one, for cuDNN's autotuning of its
    tile shape and a warm-up at load. ``can_compile`` False (a module whose state changes per
    task, which would rebuild its graph in a job on every switch) keeps it eager, with a warning.
    """
    parts = set(choice.split("+"))
    compile_it = "compile" in parts
    if compile_it and not can_compile:
        log.warning("model %s cannot be compiled (it changes per task); it runs eager", name)
        compile_it = False
    channels_last = "channels_last" in parts
    if not (compile_it or channels_last or device.type == "cuda"):
        return None
    accelerated = AcceleratedForward(
        module,
        device,
        name=name,
        compile=compile_it,
        channels_last=channels_last,
        cudnn_benchmark=settings.cudnn_benchmark,
    )
    module.forward = accelerated  # type: ignore[method-assign]
    return accelerated


def to_device(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """``H x W x 3`` RGB on the host to ``1 x 3 x H x W`` float32 on ``device``.

    On CUDA the transposing copy goes into pinned memory, from which the copy to the device is
    asynchronous: the host queues the model's first kernels instead of waiting for the bus. The
    caching host allocator records the copy's stream, so the pinned block is not reused early.
    """
    if device.type != "cuda":
        chw = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
        return torch.from_numpy(chw)[None].to(device)
    height, width, channels = pixels.shape
    host = torch.empty((1, channels, height, width), dtype=torch.float32, pin_memory=True)
    host[0].copy_(torch.from_numpy(np.asarray(pixels, dtype=np.float32)).permute(2, 0, 1))
    return host.to(device, non_blocking=True)


PINNED_MAX_BYTES = 256 * 1024 * 1024
"""Outputs up to this size come back through pinned host memory (fast, non-blocking); larger
ones through ordinary memory, because the CUDA host allocator rounds pinned blocks up to powers
of two and keeps them for reuse: one x4 upscale of 100 MP would pin 32 GiB for good."""


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """``1 x C x H x W`` on any device to an ``H x W x C`` array on the host.

    The tensor is copied as it is laid out and transposed on the host: copying a permuted view
    off the GPU would first make a contiguous copy of it there, as large as the output. On CUDA
    the copy lands in pinned memory without blocking, then the stream is synchronised: numpy
    must not read the array before the copy has finished.
    """
    chw = image[0]
    if image.device.type != "cuda":
        return chw.permute(1, 2, 0).numpy()
    if chw.numel() * chw.element_size() > PINNED_MAX_BYTES:
        return chw.cpu().permute(1, 2, 0).numpy()
    host = torch.empty(chw.shape, dtype=chw.dtype, pin_memory=True)
    host.copy_(chw, non_blocking=True)
    torch.cuda.current_stream(image.device).synchronize()
    return host.permute(1, 2, 0).numpy()
