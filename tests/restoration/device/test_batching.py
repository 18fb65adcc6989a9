"""Cross-job batching: jobs restoring at once share forward passes and get the pixels they get
alone; only requests of one model, task and tile layout merge; a failed pass reaches every job
in it; a job that stops waiting takes nothing from the others; off unless the worker holds
several jobs and the setting asks for it.

The threaded tests are made deterministic: every job's first tile batch waits for the others
to reach theirs, and the first pass holds the device until all of them are queued, so the
batches behind it are queued together and must either merge or run one pass each."""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sqlalchemy import select

from restoration.architectures.nafnet_night import NightNAFNet, save_night
from restoration.device.batching import DeviceBatcher, DeviceRunner, DeviceThread, PassFn
from restoration.loading import load_restorer
from restoration.restorers import TiledRestorer
from restoration.tiling import SizeRequirements, TileConfig
from shared.catalogue import get_entry
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import Job, JobStatus
from shared.errors import JobCancelled
from shared.queue import NoDispatch
from tests.restoration.architectures.test_nafnet_night import TINY
from tests.services import wait_until
from tests.workers.test_concurrency import _submit
from workers.context import WorkerContext
from workers.pipeline import run_job

CPU = torch.device("cpu")
JOBS = 3
WAIT_S = 30.0
"""How long anything here waits for another thread; only a broken batcher waits this long."""
TOLERANCE = 1e-5
"""Merged against alone: the same arithmetic on a larger batch (float32 summation order)."""
KEY = ("model", "task")
SETTLE_S = 0.05
"""A batch is counted just before its job submits it: microseconds, given this much margin."""


class _Watch:
    """What the jobs hand the device and what it runs. Every job's first tile batch waits for
    the others to reach theirs, and the first pass waits until all of them are handed over."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.batches = 0
        self.passes: list[int] = []
        """Tiles in each forward pass, in the order they ran."""
        self._changed = threading.Condition()
        self._start = threading.Barrier(jobs)

    def runner(self, inner: DeviceRunner) -> DeviceRunner:
        return _CountingRunner(inner, self)

    def handed(self, first: bool) -> None:
        if first:
            self._start.wait(WAIT_S)
        with self._changed:
            self.batches += 1
            self._changed.notify_all()

    def pass_runs(self, tiles: int) -> None:
        with self._changed:
            first = not self.passes
            if first:
                self._changed.wait_for(lambda: self.batches >= self.jobs, WAIT_S)
            self.passes.append(tiles)
        if first:
            time.sleep(SETTLE_S)  # the last batch handed over reaches the queue


class _CountingRunner:
    """A job's real runner, telling the watch about each tile batch handed to it."""

    def __init__(self, inner: DeviceRunner, watch: _Watch) -> None:
        self._inner = inner
        self._watch = watch
        self._first = True

    def forward(
        self,
        key: Hashable,
        forward: PassFn,
        inputs: torch.Tensor,
        per_sample: tuple[torch.Tensor, ...] = (),
    ) -> torch.Tensor:
        self._watch.handed(self._first)
        self._first = False
        return self._inner.forward(key, forward, inputs, per_sample)

    def alone(self, work: Callable[[], Any], *, charged: bool = True) -> Any:
        return self._inner.alone(work, charged=charged)


def _restore_together(
    restorer: TiledRestorer, photos: list[np.ndarray], batcher: DeviceBatcher, watch: _Watch
) -> list[np.ndarray]:
    with ThreadPoolExecutor(len(photos)) as pool:
        futures = [
            pool.submit(restorer.restore, photo, None, None, watch.runner(batcher.runner()))
            for photo in photos
        ]
        return [future.result(timeout=WAIT_S) for future in futures]


def _photos(count: int, height: int = 40, width: int = 56) -> list[np.ndarray]:
    """Photos of one size and different exposures (so per-photo gains differ)."""
    rng = np.random.default_rng(0)
    return [
        (rng.random((height, width, 3), dtype=np.float32) * 0.1 * (index + 1)).astype(np.float32)
        for index in range(count)
    ]


@pytest.fixture
def night(tmp_path: Path) -> TiledRestorer:
    """The night model as the worker loads it (tiny, random weights), tiles of 32 in batches
    of 2 with one exposure per photo; its gain head made to depend on the photo (a fresh one
    gives every photo the same gain, which would hide a photo given another one's)."""
    torch.manual_seed(0)
    model = NightNAFNet(**TINY).eval()
    torch.nn.init.normal_(model.gain[2].weight, std=0.5)
    path = save_night(model, tmp_path / "night.safetensors")
    entry = dataclasses.replace(get_entry("darkroom-night-v1"), tile=32, overlap=8)
    restorer = load_restorer(entry, path, CPU, Settings(home=tmp_path, tile_batch_size=2))
    assert isinstance(restorer, TiledRestorer)
    return restorer


@contextmanager
def _night_passes(watch: _Watch) -> Iterator[None]:
    """Every forward of a NightNAFNet, seen by a global forward hook: the restorer's own model,
    unwrapped."""

    def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if isinstance(module, NightNAFNet):
            watch.pass_runs(args[0].shape[0])

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_jobs_restoring_at_once_share_passes_and_get_the_pixels_they_get_alone(
    night: TiledRestorer,
) -> None:
    photos = _photos(JOBS)  # 40 x 56 in tiles of 32: 4 tiles, 2 batches each
    gains = [
        night.per_photo(torch.from_numpy(p.transpose(2, 0, 1).copy())[None]).extras for p in photos
    ]
    assert not torch.allclose(gains[0][0], gains[-1][0], atol=1e-3), "gains too close to tell"
    alone = [night.restore(photo) for photo in photos]
    watch = _Watch(JOBS)

    with _night_passes(watch), DeviceBatcher(CPU, max_tiles=8) as batcher:
        together = _restore_together(night, photos, batcher, watch)

    for merged, own in zip(together, alone, strict=True):
        np.testing.assert_allclose(merged, own, atol=TOLERANCE)
    assert watch.batches == 2 * JOBS
    assert sum(watch.passes) == 4 * JOBS
    assert len(watch.passes) < watch.batches, watch.passes
    assert max(watch.passes) > 2, f"no pass carried two photos' tiles: {watch.passes}"


def _doubling(passes: list[int]) -> PassFn:
    def forward(inputs: torch.Tensor, *per_sample: torch.Tensor) -> torch.Tensor:
        passes.append(inputs.shape[0])
        return inputs * 2

    return forward


@contextmanager
def _held(batcher: DeviceBatcher) -> Iterator[None]:
    """The device busy with other work until the block ends: what is submitted meanwhile is
    queued together."""
    release = threading.Event()
    busy = batcher.submit_alone(lambda: release.wait(WAIT_S))
    try:
        yield
    finally:
        release.set()
        busy.result(WAIT_S)


def test_only_requests_of_one_key_and_tile_layout_share_a_pass() -> None:
    passes: list[int] = []
    forward = _doubling(passes)
    tiles = torch.rand(2, 3, 8, 8)
    with DeviceBatcher(CPU, max_tiles=16) as batcher:
        with _held(batcher):
            futures = {
                "first": batcher.submit(KEY, forward, tiles),
                "other shape": batcher.submit(KEY, forward, torch.rand(2, 3, 8, 16)),
                "other task": batcher.submit(("model", "other task"), forward, tiles),
                "other dtype": batcher.submit(KEY, forward, tiles.double()),
                "per-sample input": batcher.submit(KEY, forward, tiles, (torch.rand(2, 3),)),
                "same": batcher.submit(KEY, forward, tiles + 1),
            }
        outputs = {name: future.result(WAIT_S)[0] for name, future in futures.items()}
    assert passes == [4, 2, 2, 2, 2]  # "first" with "same"; every other one alone, in order
    assert torch.equal(outputs["first"], tiles * 2)
    assert torch.equal(outputs["same"], (tiles + 1) * 2)
    assert outputs["other shape"].shape == (2, 3, 8, 16)


def test_per_sample_inputs_travel_with_their_tiles_and_passes_hold_at_most_max_tiles() -> None:
    seen: list[torch.Tensor] = []

    def scale(inputs: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        seen.append(gain.clone())
        return inputs * gain[:, :, None, None]

    tiles = torch.ones(2, 3, 4, 4)
    with DeviceBatcher(CPU, max_tiles=4) as batcher:
        with _held(batcher):
            futures = [
                batcher.submit(KEY, scale, tiles, (torch.full((1, 3), gain).expand(2, 3),))
                for gain in (1.0, 2.0, 3.0)
            ]
        outputs = [future.result(WAIT_S)[0] for future in futures]
    assert [len(gains) for gains in seen] == [4, 2]  # two requests of 2 fit in 4 tiles
    for output, gain in zip(outputs, (1.0, 2.0, 3.0), strict=True):
        assert torch.equal(output, tiles * gain)


def test_a_failed_pass_reaches_every_job_in_it_and_the_device_goes_on() -> None:
    passes: list[int] = []

    def out_of_memory(inputs: torch.Tensor) -> torch.Tensor:
        passes.append(inputs.shape[0])
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with DeviceBatcher(CPU, max_tiles=16) as batcher:
        with _held(batcher):
            failing = [batcher.submit(KEY, out_of_memory, torch.rand(2, 3, 8, 8)) for _ in "abc"]
        for future in failing:
            with pytest.raises(torch.OutOfMemoryError):
                future.result(WAIT_S)
        assert passes == [6]  # one merged pass, its error given to all three
        after = batcher.submit(KEY, _doubling(passes), torch.ones(1, 3, 8, 8))
        output, seconds = after.result(WAIT_S)
    assert torch.equal(output, torch.full((1, 3, 8, 8), 2.0)) and seconds >= 0


def test_merged_passes_are_padded_to_the_one_warmed_shape() -> None:
    """With ``pad_merged`` (CUDA), every merged pass has ``max_tiles`` rows, the shape the
    warm-up compiled; each job still gets exactly its own tiles back."""
    passes: list[int] = []
    with DeviceBatcher(CPU, max_tiles=8, pad_merged=True) as batcher:
        with _held(batcher):
            futures = [
                batcher.submit(KEY, _doubling(passes), torch.full((2, 3, 8, 8), float(v)))
                for v in (1, 2, 3)
            ]
        outputs = [future.result(WAIT_S)[0] for future in futures]
        alone = batcher.submit(KEY, _doubling(passes), torch.ones(3, 3, 8, 8)).result(WAIT_S)[0]
    assert passes == [8, 3]  # merged: padded to 8; alone: as it is
    for output, value in zip(outputs, (1, 2, 3), strict=True):
        assert torch.equal(output, torch.full((2, 3, 8, 8), 2.0 * value))
    assert torch.equal(alone, torch.full((3, 3, 8, 8), 2.0))


def test_a_failed_pass_leaves_nothing_of_the_attempt_alive() -> None:
    """Each job of a failed pass raises its own copy of the error, so once a job has handled
    it the tiles of the failed attempt are freed at once (no cycle through the shared future
    for only the collector to break): what an out-of-memory retry needs before it allocates."""
    tiles_of: list[weakref.ref[torch.Tensor]] = []
    raised: list[BaseException] = []

    def out_of_memory(inputs: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    def job(runner: DeviceRunner) -> type[BaseException]:
        tiles = torch.rand(2, 3, 8, 8)
        tiles_of.append(weakref.ref(tiles))
        try:
            runner.forward(KEY, out_of_memory, tiles)
        except torch.OutOfMemoryError as exc:
            raised.append(exc)
            return type(exc)
        raise AssertionError("the pass did not fail")

    gc.disable()
    try:
        with DeviceBatcher(CPU, max_tiles=16) as batcher, ThreadPoolExecutor(2) as pool:
            with _held(batcher):
                jobs = [pool.submit(job, batcher.runner(wait_check_s=0.01)) for _ in "ab"]
                wait_until(lambda: batcher.waiting == 2, WAIT_S, message="both jobs queued")
            assert [j.result(WAIT_S) for j in jobs] == [torch.OutOfMemoryError] * 2
        assert raised[0] is not raised[1]
        raised.clear()
        assert [ref() for ref in tiles_of] == [None, None]
    finally:
        gc.enable()


def test_on_the_device_thread_every_pass_and_the_warm_up_share_one_thread() -> None:
    """Jobs that each hold the device (no merging) on CUDA: their passes and the model's
    warm-up all run on one thread, where cuDNN's per-thread plans were tuned."""
    device_thread = DeviceThread()
    seen: list[int] = []

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        seen.append(threading.get_ident())
        return inputs * 2

    def job() -> torch.Tensor:
        return device_thread.runner().forward(KEY, forward, torch.ones(2, 3, 8, 8))

    try:
        warmed = device_thread.runner().alone(threading.get_ident)
        with ThreadPoolExecutor(3) as pool:
            outputs = [f.result(WAIT_S) for f in [pool.submit(job) for _ in range(6)]]
    finally:
        device_thread.close()
    assert set(seen) == {warmed} and warmed != threading.get_ident()
    assert all(torch.equal(out, torch.full((2, 3, 8, 8), 2.0)) for out in outputs)


def test_an_error_on_the_device_thread_is_the_jobs_own_and_frees_its_tiles() -> None:
    device_thread = DeviceThread()
    tiles_of: list[weakref.ref[torch.Tensor]] = []

    def out_of_memory(inputs: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    def job() -> bool:
        tiles = torch.rand(2, 3, 8, 8)
        tiles_of.append(weakref.ref(tiles))
        try:
            device_thread.runner().forward(KEY, out_of_memory, tiles)
        except torch.OutOfMemoryError:
            return True
        return False

    gc.disable()
    try:
        assert job() and job()
        assert [ref() for ref in tiles_of] == [None, None]
    finally:
        gc.enable()
        device_thread.close()


class _SmallDevice:
    """A one-convolution model on a device that runs out of memory on tiles over 16 pixels,
    as a GPU does on tiles too large; counts the passes that ran out."""

    def __init__(self, watch: _Watch | None = None) -> None:
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1).eval()
        self.watch = watch
        self.out_of_memory: list[int] = []

    def __call__(self, batch: torch.Tensor, task: str | None) -> torch.Tensor:
        if self.watch is not None:
            self.watch.pass_runs(batch.shape[0])
        if batch.shape[-1] > 16:
            self.out_of_memory.append(batch.shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.conv(batch)

    def restorer(self) -> TiledRestorer:
        return TiledRestorer(
            "small-device",
            self,
            CPU,
            size=SizeRequirements(),
            scale_for=lambda task: 1,
            tiles=TileConfig(tile=32, overlap=8, batch_size=2, min_tile=8),
            nbytes=0,
        )


def test_out_of_memory_in_a_shared_pass_makes_each_job_halve_its_own_tile() -> None:
    photos = _photos(JOBS, 48, 48)
    alone = [_SmallDevice().restorer().restore(photo) for photo in photos]
    watch = _Watch(JOBS)
    device = _SmallDevice(watch)

    with DeviceBatcher(CPU, max_tiles=8) as batcher:
        together = _restore_together(device.restorer(), photos, batcher, watch)

    for merged, own in zip(together, alone, strict=True):
        np.testing.assert_allclose(merged, own, atol=TOLERANCE)
    # Each job's first batch (tiles of 32) ran out of memory, in fewer passes than jobs: a pass
    # holding several jobs' tiles gave its error to each, and each retried with tiles of 16.
    assert sum(device.out_of_memory) == 2 * JOBS
    assert len(device.out_of_memory) < JOBS, device.out_of_memory


def _stopper() -> tuple[threading.Event, Callable[[], None]]:
    cancelled = threading.Event()

    def check_stop() -> None:
        if cancelled.is_set():
            raise JobCancelled("job cancelled while waiting for the device")

    return cancelled, check_stop


def test_a_job_cancelled_before_its_pass_leaves_the_others_their_pass() -> None:
    passes: list[int] = []
    forward = _doubling(passes)
    cancelled, check_stop = _stopper()
    with DeviceBatcher(CPU, max_tiles=16) as batcher, ThreadPoolExecutor(2) as pool:
        quitter = batcher.runner(check_stop, wait_check_s=0.01)
        stayer = batcher.runner(wait_check_s=0.01)
        with _held(batcher):
            quitting = pool.submit(quitter.forward, KEY, forward, torch.ones(3, 3, 8, 8))
            staying = pool.submit(stayer.forward, KEY, forward, torch.full((2, 3, 8, 8), 5.0))
            cancelled.set()
            with pytest.raises(JobCancelled):
                quitting.result(WAIT_S)
        output = staying.result(WAIT_S)
    assert torch.equal(output, torch.full((2, 3, 8, 8), 10.0))
    assert passes == [2], "the cancelled job's tiles ran"
    assert quitter.busy_s == 0 and stayer.busy_s > 0


def test_a_job_cancelled_during_its_pass_leaves_the_others_their_slice() -> None:
    running, proceed = threading.Event(), threading.Event()
    passes: list[int] = []

    def slow(inputs: torch.Tensor) -> torch.Tensor:
        passes.append(inputs.shape[0])
        running.set()
        proceed.wait(WAIT_S)
        return inputs * 2

    cancelled, check_stop = _stopper()
    with DeviceBatcher(CPU, max_tiles=16) as batcher, ThreadPoolExecutor(2) as pool:
        quitter = batcher.runner(check_stop, wait_check_s=0.01)
        stayer = batcher.runner(wait_check_s=0.01)
        with _held(batcher):
            quitting = pool.submit(quitter.forward, KEY, slow, torch.ones(3, 3, 8, 8))
            staying = pool.submit(stayer.forward, KEY, slow, torch.full((2, 3, 8, 8), 5.0))
            # Both queued behind the held device, so they share a pass.
            wait_until(lambda: batcher.waiting >= 2, WAIT_S, 0.001, "both jobs to be queued")
        assert running.wait(WAIT_S)
        cancelled.set()
        with pytest.raises(JobCancelled):
            quitting.result(WAIT_S)
        proceed.set()
        output = staying.result(WAIT_S)
    assert passes == [5]
    assert torch.equal(output, torch.full((2, 3, 8, 8), 10.0))


@pytest.mark.parametrize(
    ("concurrency", "tiles", "merges"),
    [(3, 0, False), (3, 1, False), (1, 8, False), (3, 8, True)],
)
def test_a_worker_merges_passes_only_holding_several_jobs_with_the_setting_on(
    settings: Settings, concurrency: int, tiles: int, merges: bool
) -> None:
    update = {"worker_concurrency": concurrency, "device_batch_tiles": tiles}
    ctx = WorkerContext.build(settings.model_copy(update=update))
    assert (ctx.batcher is not None) is merges
    if ctx.batcher is not None:
        assert ctx.batcher.max_tiles == tiles
        ctx.batcher.close()


def test_jobs_merging_passes_succeed_and_are_charged_the_device_time_they_used(
    settings: Settings, s3: Any
) -> None:
    merging = settings.model_copy(update={"worker_concurrency": JOBS, "device_batch_tiles": 8})
    ids = _submit(merging, s3, 2 * JOBS, NoDispatch())
    ctx = WorkerContext.build(merging)
    assert ctx.batcher is not None
    started = time.perf_counter()
    with ThreadPoolExecutor(JOBS) as pool:
        statuses = list(pool.map(lambda job_id: run_job(job_id, ctx), ids))
    wall = time.perf_counter() - started
    ctx.batcher.close()

    assert statuses == [JobStatus.succeeded] * len(ids)
    with session_factory(merging.database_url)() as session:
        done = list(session.scalars(select(Job).where(Job.id.in_(ids))))
    for job in done:
        assert job.device_s is not None and job.restore_s is not None
        assert 0 < job.device_s <= job.restore_s
    # Shares of passes, not whole passes per job: together no more than the wall time.
    assert sum(job.device_s for job in done if job.device_s) <= wall
