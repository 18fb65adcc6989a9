"""Cross-job batching: the tiles of several jobs' photos in one forward pass.

A worker holding several jobs (``worker_concurrency`` above 1) often has them restoring photos
with the same model at once, each cutting its photo into tiles of one shape
(``restoration.tiling``) and sending ``tile_batch_size`` of them at a time to the model. A GPU runs
one pass of 12 tiles in less time than three passes of 4 (fewer kernel launches, fuller
kernels, less Python per tile). So with ``device_batch_tiles`` above 1 a job no longer owns the
device for its whole restore: each forward pass is a request to the worker's
:class:`DeviceBatcher`, whose one device thread runs the oldest request together with every
waiting request that can share its pass, up to ``device_batch_tiles`` tiles, and hands each
job its own slice of the output.

Requests share a pass when the caller's key (the loaded model and the task) is equal and so are
the shape past the first dimension, the dtype and the device of each of their tensors. Inputs
given once per sample travel with their tiles: the night model's per-photo exposure is repeated
for each tile and concatenated along the batch dimension like the tiles, so photos with
different exposures still share a pass.

Thread safety:

* One thread runs every pass, so the device runs one forward at a time. The oldest waiting
  request always runs next; only requests sharing its pass overtake the ones between, so no
  request waits behind more passes than there were older requests.
* Each request is a :class:`concurrent.futures.Future`. A job waits on nothing but its own
  future, and the device thread on nothing but the queue: there is no cycle to deadlock on. A
  pass asking the device thread for another pass would wait on itself, so that raises instead.
* A job stopped while it waits (cancelled, past its time limit) cancels its future: a request
  not yet taken is dropped (``set_running_or_notify_cancel``); one already in a pass finishes
  and its slice is dropped. The other jobs of that pass get theirs either way.
* An exception in a pass is set on the future of every request in it, so each job raises it:
  on a CUDA out-of-memory each job's ``restore_with_oom_fallback`` halves its own tile. The
  frames of the failed pass are cleared first, so the activations they hold are freed before
  the jobs empty the CUDA cache. The device thread itself goes on serving.

Time: a pass ends with a CUDA synchronisation, so its duration is the time the device really
worked; it is charged to its requests in proportion to their tiles (``BatchedRunner.busy_s``),
so the sum over jobs is the device's busy time. While the device thread waits for the GPU, the
other jobs' next requests gather in the queue: that wait is what fills the next pass.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeVar

import torch

__all__ = ["DIRECT", "BatchedRunner", "DeviceBatcher", "DeviceRunner", "DirectRunner", "PassFn"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

PassFn = Callable[..., torch.Tensor]
"""``(inputs, *per_sample)`` to outputs, every tensor ``N x ...`` with the same ``N``."""


class DeviceRunner(Protocol):
    """How a restorer runs its work on the device: at once, or through a batcher."""

    def forward(
        self,
        key: Hashable,
        forward: PassFn,
        inputs: torch.Tensor,
        per_sample: tuple[torch.Tensor, ...] = (),
    ) -> torch.Tensor:
        """``forward(inputs, *per_sample)``. Calls with equal ``key`` must be interchangeable:
        the ``forward`` of any one of them may run the others' inputs too."""
        ...

    def alone(self, work: Callable[[], _T], *, charged: bool = True) -> _T:
        """``work()`` with the device to itself: work that cannot share a pass (the night
        model's exposure, measured on the whole photo; loading a model). ``charged``: whether
        its time counts as the job's device time (a model's load does not: it is not the
        job's restore)."""
        ...


class DirectRunner:
    """The caller owns the device (a job holding the worker's device lock for its whole
    restore, a benchmark, a test), so the work just runs."""

    def forward(
        self,
        key: Hashable,
        forward: PassFn,
        inputs: torch.Tensor,
        per_sample: tuple[torch.Tensor, ...] = (),
    ) -> torch.Tensor:
        return forward(inputs, *per_sample)

    def alone(self, work: Callable[[], _T], *, charged: bool = True) -> _T:
        return work()


DIRECT = DirectRunner()


class DeviceThread:
    """One thread that runs every pass on the device, for a worker whose jobs each hold the
    device for their whole restore (several jobs at once, no merged passes).

    Without it each job's passes run on the pool thread that took the job, and cuDNN keeps its
    tuned plans per thread: every pool thread would search again in its first job, and the
    warm-up (run here too, as ``alone`` work) would have tuned a thread that serves nothing.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="darkroom-device")

    def runner(self) -> DeviceRunner:
        return _OnDeviceThread(self._pool)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class _OnDeviceThread:
    """A job's handle on :class:`DeviceThread`: it holds the device already, so each call only
    hops to the device thread and back."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool

    def forward(
        self,
        key: Hashable,
        forward: PassFn,
        inputs: torch.Tensor,
        per_sample: tuple[torch.Tensor, ...] = (),
    ) -> torch.Tensor:
        return _result(self._pool.submit(forward, inputs, *per_sample))

    def alone(self, work: Callable[[], _T], *, charged: bool = True) -> _T:
        return _result(self._pool.submit(work))


def _result(future: Future[_T]) -> _T:
    """The future's result, or a copy of its error raised here.

    Every job of a failed pass would raise the same exception object, and raising it adds this
    job's frames to its traceback: the frames hold the future, the future holds the exception,
    and job B's traceback would pick up job A's frames. Only the cycle collector would then free
    the failed attempt's tiles, so an out-of-memory retry would allocate beside them. Each job
    raises a copy of its own instead, straight away and never named here, since this frame
    will be in its traceback."""
    error = future.exception()
    if error is None:
        return future.result()
    traceback.clear_frames(error.__traceback__)
    del future
    try:
        raise _own_copy(error)
    finally:
        del error


@dataclass(eq=False)
class _Request:
    key: Hashable
    work: Callable[..., Any]
    tensors: tuple[torch.Tensor, ...]
    future: Future[tuple[Any, float]] = field(default_factory=Future)

    @property
    def tiles(self) -> int:
        return self.tensors[0].shape[0] if self.tensors else 0


class DeviceBatcher:
    """A worker process's device thread and its queue of pass requests (see the module
    docstring). Built once per process; :meth:`runner` gives each job its handle on it."""

    def __init__(self, device: torch.device, max_tiles: int, *, pad_merged: bool = False) -> None:
        if max_tiles < 1:
            raise ValueError(f"max_tiles must be >= 1, got {max_tiles}")
        self.device = device
        self.max_tiles = max_tiles
        self.pad_merged = pad_merged
        """Merged passes are padded to ``max_tiles`` rows: the one merged shape the warm-up
        compiles and autotunes (``TiledRestorer.warm_up``), instead of a new shape for every
        way jobs' batches add up, which would run eager and untuned."""
        self._pending: deque[_Request] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="darkroom-device", daemon=True)
        self._thread.start()

    def runner(
        self, check_stop: Callable[[], None] | None = None, wait_check_s: float = 1.0
    ) -> BatchedRunner:
        """One job's handle; ``check_stop`` runs every ``wait_check_s`` while the job waits and
        raises to stop waiting."""
        return BatchedRunner(self, check_stop or _keep_going, wait_check_s)

    def submit(
        self,
        key: Hashable,
        forward: PassFn,
        inputs: torch.Tensor,
        per_sample: tuple[torch.Tensor, ...] = (),
    ) -> Future[tuple[Any, float]]:
        """Queue ``forward(inputs, *per_sample)`` (see ``DeviceRunner.forward``); the future
        gets this request's slice of the output and the device seconds charged to it. Requests
        with equal keys whose tensors agree past the first dimension (shape, dtype, device)
        may share a pass."""
        tensors = (inputs, *per_sample)
        if any(tensor.shape[0] != inputs.shape[0] for tensor in per_sample):
            shapes = [tuple(tensor.shape) for tensor in tensors]
            raise ValueError(f"per-sample inputs must have one row per input: {shapes}")
        layout = tuple((tensor.shape[1:], tensor.dtype, tensor.device) for tensor in tensors)
        return self._queue(_Request((key, layout), forward, tensors))

    def submit_alone(self, work: Callable[[], Any]) -> Future[tuple[Any, float]]:
        """Queue ``work()`` for a pass of its own (see ``DeviceRunner.alone``)."""
        return self._queue(_Request(object(), work, ()))  # a key equal to no other

    def _queue(self, request: _Request) -> Future[tuple[Any, float]]:
        if threading.current_thread() is self._thread:
            raise RuntimeError("a pass on the device thread asked it for another pass")
        with self._changed:
            if self._closed:
                raise RuntimeError("the device batcher is closed")
            self._pending.append(request)
            self._changed.notify()
        return request.future

    @property
    def waiting(self) -> int:
        """Requests queued for the device now, not yet in a pass."""
        with self._changed:
            return len(self._pending)

    def close(self) -> None:
        """Run what is queued, then stop the device thread."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join()

    def __enter__(self) -> DeviceBatcher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _serve(self) -> None:
        while (group := self._next_group()) is not None:
            self._run(group)

    def _next_group(self) -> list[_Request] | None:
        """The oldest request still wanted and every later one that can share its pass, taken
        off the queue; None once closed and drained."""
        with self._changed:
            while True:
                while not self._pending:
                    if self._closed:
                        return None
                    self._changed.wait()
                head = self._pending.popleft()
                if head.future.set_running_or_notify_cancel():  # False: its job stopped waiting
                    break
            group, tiles, left = [head], head.tiles, deque[_Request]()
            for request in self._pending:
                if request.key == head.key and tiles + request.tiles <= self.max_tiles:
                    if request.future.set_running_or_notify_cancel():
                        group.append(request)
                        tiles += request.tiles
                else:
                    left.append(request)
            self._pending = left
        return group

    def _run(self, group: list[_Request]) -> None:
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                outputs = _one_pass(group, self.max_tiles if self.pad_merged else 0)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        except BaseException as exc:  # whatever it is belongs to the jobs; this thread goes on
            traceback.clear_frames(exc.__traceback__)
            # The traceback keeps this frame (a running frame cannot be cleared): empty what it
            # holds, or the error on the futures would keep every request's tiles alive.
            requests, group[:] = list(group), []
            while requests:
                requests.pop().future.set_exception(exc)
            return
        seconds = time.perf_counter() - start
        tiles = sum(request.tiles for request in group)
        if len(group) > 1:
            log.debug("one pass of %d tiles for %d requests: %.3fs", tiles, len(group), seconds)
        for request, output in zip(group, outputs, strict=True):
            share = request.tiles / tiles if tiles else 1.0
            request.future.set_result((output, seconds * share))


def _one_pass(group: list[_Request], pad_to: int = 0) -> list[Any]:
    head = group[0]
    if len(group) == 1:
        return [head.work(*head.tensors)]  # alone: no copy into a merged batch
    sizes = [request.tiles for request in group]
    merged = [torch.cat(parts) for parts in zip(*(r.tensors for r in group), strict=True)]
    if pad_to > sum(sizes):
        # Repeats of the last row: real tiles, so the padding cannot overflow or divide by 0.
        extra = pad_to - sum(sizes)
        merged = [torch.cat([t, t[-1:].expand(extra, *t.shape[1:])]) for t in merged]
    output = head.work(*merged)
    if pad_to > sum(sizes) and output.shape[0] == pad_to:
        output = output[: sum(sizes)]
    if output.shape[0] != sum(sizes):
        raise ValueError(
            f"a merged pass turned {sum(sizes)} tiles into {output.shape[0]} outputs; "
            "the model must keep the batch dimension"
        )
    return list(output.split(sizes))


def _keep_going() -> None:
    """The stop check of a caller that never stops waiting."""


class BatchedRunner:
    """One job's handle on a :class:`DeviceBatcher`: each call waits for its pass, checking
    between waits whether the job should stop, and adds up the device time charged to it."""

    def __init__(
        self, batcher: DeviceBatcher, check_stop: Callable[[], None], wait_check_s: float
    ) -> None:
        self._batcher = batcher
        self._check_stop = check_stop
        self._wait_check_s = wait_check_s
        self.busy_s = 0.0
        """Device seconds charged to this job: its tiles' share of each pass it was in, and
        the whole of the passes it ran alone."""

    def forward(
        self,
        key: Hashable,
        forward: PassFn,
        inputs: torch.Tensor,
        per_sample: tuple[torch.Tensor, ...] = (),
    ) -> torch.Tensor:
        return self._wait(self._batcher.submit(key, forward, inputs, per_sample))

    def alone(self, work: Callable[[], _T], *, charged: bool = True) -> _T:
        return self._wait(self._batcher.submit_alone(work), charged=charged)

    def _wait(self, future: Future[tuple[Any, float]], *, charged: bool = True) -> Any:
        while future not in wait((future,), timeout=self._wait_check_s).done:
            try:
                self._check_stop()
            except BaseException:
                future.cancel()  # not taken yet: dropped; in a pass: its slice goes unread
                raise
        output, seconds = _result(future)
        if charged:
            self.busy_s += seconds
        return output


def _own_copy(error: BaseException) -> BaseException:
    """A fresh exception equal to ``error`` (type, arguments, attributes; no traceback)."""
    try:
        return copy.copy(error)
    except Exception:  # an exception type that cannot be rebuilt from its arguments
        return RuntimeError(f"{type(error).__name__}: {error}")
