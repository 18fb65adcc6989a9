"""Every way of running a model (``restoration.device.acceleration``) restores what eager restores,
through the path jobs take (``load_restorer``), on Darkroom's MIRNet and on a NAFNet loaded through
spandrel, both tiny with random weights.

A compile costs 10-80 s on a small CPU, so there are two: MIRNet compiled with channels-last
and NAFNet compiled alone; every choice is met by at least one model and compiling by both. The
compiler failure is real (dynamo calls a backend that raises), and cheap: nothing is compiled.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from spandrel.architectures.NAFNet import NAFNet

from benchmarks.gpu_memory import OutOfMemoryOnce
from restoration.device.acceleration import accelerate, choose
from restoration.loading import load_restorer
from restoration.restorers import TiledRestorer
from shared.catalogue import ModelEntry, get_entry
from shared.config import Settings

TILE, OVERLAP, BATCH = 32, 8, 2
PHOTO = (80, 80)
"""Three rows of three 32-px tiles: four full batches of two, then a batch of one."""
SMALL = (20, 28)
"""Smaller than a tile: one tile of its own size."""
ATOL = 1e-5
"""Against eager; measured: 2e-7 (float32 sums in another order)."""


@pytest.fixture(scope="module")
def models(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Catalogue entries cut to 32-px tiles, and their weights: the suite's tiny MIRNet, and a
    tiny NAFNet saved as megvii-research publishes it (under ``params``)."""
    torch.manual_seed(0)
    nafnet = NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    nafnet_path = tmp_path_factory.mktemp("nafnet") / "NAFNet-GoPro-width32.pth"
    torch.save({"params": nafnet.state_dict()}, nafnet_path)
    tiles = {"tile": TILE, "overlap": OVERLAP}
    return {
        "mirnet": (
            dataclasses.replace(get_entry("mirnet-lol"), **tiles),
            model_dir / "mirnet-lol.pt",
        ),
        "nafnet": (dataclasses.replace(get_entry("nafnet-gopro"), **tiles), nafnet_path),
    }


@pytest.fixture
def compiled_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, ...]]]:
    """Input shape of every call that runs a compiled graph: ``torch.compile`` wrapped."""
    calls: list[tuple[int, ...]] = []
    real = torch.compile

    def recording(fn, **options):  # type: ignore[no-untyped-def]
        compiled = real(fn, **options)

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(tuple(args[0].shape))
            return compiled(*args, **kwargs)

        return call

    monkeypatch.setattr(torch, "compile", recording)
    yield calls


def _load(entry: ModelEntry, path: Path, acceleration: str) -> TiledRestorer:
    settings = Settings(acceleration=acceleration, tile_batch_size=BATCH, device="cpu")  # type: ignore[arg-type]
    restorer = load_restorer(entry, path, torch.device("cpu"), settings)
    assert isinstance(restorer, TiledRestorer)
    return restorer


def _photo(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((*shape, 3), dtype=np.float32)


def _has_channels_last_weights(restorer: TiledRestorer) -> bool:
    assert restorer.accelerated is not None
    weights = [p for p in restorer.accelerated.module.parameters() if p.dim() == 4]
    assert weights
    return any(not w.is_contiguous() for w in weights)


@pytest.mark.parametrize(
    ("model", "choice", "compiled_shapes"),
    [
        ("mirnet", "channels_last", []),
        # Whole batches: the four full ones run compiled, the last (one tile) eager.
        pytest.param(
            "mirnet", "compile+channels_last", [(BATCH, 3, TILE, TILE)] * 4, marks=pytest.mark.slow
        ),
        ("nafnet", "channels_last", []),
        pytest.param("nafnet", "compile", [(BATCH, 3, TILE, TILE)] * 4, marks=pytest.mark.slow),
    ],
)
def test_each_choice_restores_what_eager_restores(
    models: dict[str, tuple],
    compiled_calls: list[tuple[int, ...]],
    model: str,
    choice: str,
    compiled_shapes: list[tuple[int, ...]],
) -> None:
    entry, path = models[model]
    eager = _load(entry, path, "eager")
    fast = _load(entry, path, choice)
    assert eager.accelerated is None  # on a CPU, eager runs the model as written
    assert fast.accelerated is not None
    assert _has_channels_last_weights(fast) == ("channels_last" in choice)
    assert fast.accelerated.compiled == ("compile" in choice)
    warmed = len(compiled_calls)

    # Nothing compiles during a job: an unwarmed shape sent to the graph would raise here.
    with torch.compiler.set_stance("fail_on_recompile"):
        restored, small = fast.restore(_photo(PHOTO)), fast.restore(_photo(SMALL))

    np.testing.assert_allclose(restored, eager.restore(_photo(PHOTO)), rtol=0, atol=ATOL)
    np.testing.assert_allclose(small, eager.restore(_photo(SMALL)), rtol=0, atol=ATOL)
    assert compiled_calls[warmed:] == compiled_shapes  # the small photo ran eager
    assert (warmed > 0) == ("compile" in choice)  # compiled at load, in the warm-up

    # The warmed-up shape from another context (autograd on, no inference mode) is not what
    # the graph was built for: eager, not a compile in the middle of a job.
    with torch.compiler.set_stance("fail_on_recompile"):
        fast.accelerated.module(torch.rand(*(compiled_shapes or [(1, 3, TILE, TILE)])[0]))
    assert compiled_calls[warmed:] == compiled_shapes


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    yield
    torch._dynamo.reset()  # drop what the broken backend left in dynamo's caches


def test_a_compiler_failure_leaves_the_model_eager(
    models: dict[str, tuple],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fresh_dynamo: None,
) -> None:
    def broken_backend(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> None:
        raise RuntimeError("inductor cannot lower this graph")

    real = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda fn, **options: real(fn, **{**options, "backend": broken_backend})
    )
    entry, path = models["nafnet"]
    with caplog.at_level(logging.WARNING, logger="restoration.device.acceleration"):
        restorer = _load(entry, path, "compile")

    assert restorer.accelerated is not None and not restorer.accelerated.compiled
    assert "torch.compile failed for model nafnet-gopro" in caplog.text
    assert "inductor cannot lower this graph" in caplog.text
    photo = _photo(PHOTO)
    np.testing.assert_array_equal(
        restorer.restore(photo), _load(entry, path, "eager").restore(photo)
    )


class _TwoConvs(torch.nn.Module):
    """A module of its own, so dynamo's graphs for it are this test's alone."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def test_more_graphs_than_dynamo_keeps_is_a_fallback_too(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_dynamo: None
) -> None:
    real = torch.compile  # dynamo's own tracing, no inductor: cheap
    monkeypatch.setattr(
        torch, "compile", lambda fn, **options: real(fn, **{**options, "backend": "eager"})
    )
    module = _TwoConvs().eval()
    accelerated = accelerate(module, torch.device("cpu"), "compile", Settings(), name="two-convs")
    assert accelerated is not None
    with (
        torch._dynamo.config.patch(recompile_limit=1),
        caplog.at_level(logging.WARNING, logger="restoration.device.acceleration"),
        accelerated.warming_up(),
        torch.inference_mode(),
    ):
        module(torch.rand(1, 3, 8, 8))
        assert accelerated.compiled
        small = torch.rand(1, 3, 4, 4)
        restored = module(small)  # a second graph, over the limit of one
    assert not accelerated.compiled
    # Darkroom's warning, with the reason (whatever dynamo calls it) in its parentheses.
    assert re.search(
        r"torch\.compile failed for model two-convs \(\w+: .+\); it runs eager", caplog.text
    ), caplog.text
    with torch.inference_mode():
        torch.testing.assert_close(restored, module(small))


def test_the_catalogue_choice_follows_the_device() -> None:
    entry = dataclasses.replace(
        get_entry("darkroom-night"), acceleration="compile", cpu_acceleration="channels_last"
    )
    settings = Settings()
    assert choose(entry, settings, torch.device("cpu")) == "channels_last"
    assert choose(entry, settings, torch.device("cuda")) == "compile"


@pytest.mark.parametrize(
    ("in_catalogue", "setting", "chosen"),
    [
        ("channels_last", "catalogue", "channels_last"),
        ("eager", "channels_last", "channels_last"),
        ("compile+channels_last", "eager", "eager"),
        ("compile", "channels_last", "channels_last"),
    ],
)
def test_the_setting_overrides_the_catalogue(
    models: dict[str, tuple], in_catalogue: str, setting: str, chosen: str
) -> None:
    entry, path = models["mirnet"]
    entry = dataclasses.replace(entry, cpu_acceleration=in_catalogue)
    settings = Settings(acceleration=setting)  # type: ignore[arg-type]
    assert choose(entry, settings, torch.device("cpu")) == chosen

    restorer = load_restorer(entry, path, torch.device("cpu"), settings)
    assert isinstance(restorer, TiledRestorer)
    if chosen == "eager":
        assert restorer.accelerated is None
    else:
        assert _has_channels_last_weights(restorer) and not restorer.accelerated.compiled
        # Nothing is built per shape on a CPU without compiling: no warm-up restore at load.
        assert not restorer.accelerated.warm_shapes


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().acceleration == "catalogue"
    assert get_entry("mirnet-lol").acceleration == "eager"  # until measured on a GPU
    monkeypatch.setenv("DARKROOM_ACCELERATION", "compile+channels_last")
    assert Settings().acceleration == "compile+channels_last"
    monkeypatch.setenv("DARKROOM_ACCELERATION", "fast")
    with pytest.raises(ValidationError):
        Settings()


def test_a_module_that_changes_per_task_is_not_compiled(caplog: pytest.LogCaptureFixture) -> None:
    module = torch.nn.Conv2d(3, 3, 3)
    with caplog.at_level(logging.WARNING, logger="restoration.device.acceleration"):
        accelerated = accelerate(
            module,
            torch.device("cpu"),
            "compile+channels_last",
            Settings(),
            name="ipt-pretrain",
            can_compile=False,
        )
    assert accelerated is not None and not accelerated.compiled and accelerated.channels_last
    assert "model ipt-pretrain cannot be compiled" in caplog.text
    assert module.forward is accelerated  # the module's callers get the fast path


def test_a_shape_whose_warm_up_ran_out_of_memory_is_not_marked_warm() -> None:
    """Otherwise the job that meets it would compile (and autotune) inside its own restore."""
    module = OutOfMemoryOnce(lambda: torch.OutOfMemoryError("CUDA out of memory (simulated)"))
    module = module.eval()
    accelerated = accelerate(module, torch.device("cpu"), "channels_last", Settings(), name="oom")
    assert accelerated is not None
    x = torch.rand(1, 3, 16, 16)
    with accelerated.warming_up(), pytest.raises(torch.OutOfMemoryError):
        accelerated(x)
    assert accelerated.warm_shapes == frozenset()
    with accelerated.warming_up():
        accelerated(x)
    assert len(accelerated.warm_shapes) == 1


def test_outputs_too_large_for_the_device_are_accumulated_on_the_host() -> None:
    """Tile halving shrinks activations, never the output: an x4 upscale of 100 MP is a 19 GB
    accumulator, so past a quarter of the free memory it lives on the host."""
    from restoration.restorers import output_device_for

    cuda = torch.device("cuda", 0)
    gib = 1 << 30
    assert output_device_for(cuda, 19 * gib, free_bytes=40 * gib) == torch.device("cpu")
    assert output_device_for(cuda, 1 * gib, free_bytes=40 * gib) == cuda
    assert output_device_for(torch.device("cpu"), 19 * gib) == torch.device("cpu")


def test_to_numpy_transposes_on_the_host() -> None:
    from restoration.device.acceleration import to_numpy

    image = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)[:1]
    array = to_numpy(image)
    assert array.shape == (4, 5, 3)
    np.testing.assert_array_equal(array, image[0].permute(1, 2, 0).numpy())


def test_the_warm_up_also_compiles_the_shape_of_merged_passes(
    models: dict[str, tuple], monkeypatch: pytest.MonkeyPatch, fresh_dynamo: None
) -> None:
    """A worker merging several jobs' tiles pads every merged pass to ``device_batch_tiles``
    rows (on CUDA): the warm-up must compile that shape too, or merged passes run eager."""
    real = torch.compile
    shapes: list[tuple[int, ...]] = []

    def recording(fn, **options):  # type: ignore[no-untyped-def]
        compiled = real(fn, **{**options, "backend": "eager"})  # dynamo only: cheap

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            shapes.append(tuple(args[0].shape))
            return compiled(*args, **kwargs)

        return call

    monkeypatch.setattr(torch, "compile", recording)
    entry, path = models["nafnet"]
    settings = Settings(
        acceleration="compile",
        tile_batch_size=BATCH,
        device="cpu",
        worker_concurrency=2,
        device_batch_tiles=3 * BATCH,
    )
    restorer = load_restorer(entry, path, torch.device("cpu"), settings)
    assert isinstance(restorer, TiledRestorer) and restorer.accelerated is not None
    batch_sizes = {shape[0] for shape in shapes}
    assert {BATCH, 3 * BATCH} <= batch_sizes
    assert any(sig for sig in restorer.accelerated.warm_shapes if f"({3 * BATCH}, 3" in str(sig))


def test_a_warm_up_compile_does_not_hold_the_process_wide_cudnn_lock(
    monkeypatch: pytest.MonkeyPatch, fresh_dynamo: None
) -> None:
    """The cuDNN benchmark flag is one for the process; its lock held for a whole compile made
    another model's pass wait 21.8 s. The compile must run outside it (autotuning on, as on
    CUDA; the compiler is dynamo alone here, so it is cheap)."""
    from restoration.device import acceleration

    real = torch.compile
    held_during_compile: list[bool] = []

    def probing(fn, **options):  # type: ignore[no-untyped-def]
        compiled = real(fn, **{**options, "backend": "eager"})
        first = True

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal first
            if first:  # the compiling call: can another thread take the lock now?
                first = False
                taken: list[bool] = []

                def try_lock() -> None:
                    got = acceleration._CUDNN_FLAG.acquire(timeout=0)
                    taken.append(got)
                    if got:
                        acceleration._CUDNN_FLAG.release()

                probe = threading.Thread(target=try_lock)
                probe.start()
                probe.join()
                held_during_compile.append(not taken[0])
            return compiled(*args, **kwargs)

        return call

    monkeypatch.setattr(torch, "compile", probing)
    module = _TwoConvs().eval()
    accelerated = accelerate(module, torch.device("cpu"), "compile", Settings(), name="two-convs")
    assert accelerated is not None
    monkeypatch.setattr(accelerated, "_autotune", True)  # as on CUDA
    with accelerated.warming_up(), torch.inference_mode():
        module(torch.rand(1, 3, 8, 8))
    assert held_during_compile == [False]
