"""MIRNet must load the reference's published checkpoints unchanged and compute its function.

The published files are ~300 MB downloads, so they are never fetched here: their exact layout is
described in ``../shared/checkpoints/mirnet-dblasko.json``, and a file with that layout (random
tensors) stands in for them. Everything else runs on small MIRNets so the suite stays fast.
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from restoration.architectures.mirnet import (
    SIZE_MULTIPLE,
    MIRNet,
    load_mirnet,
    mirnet_hyperparameters,
    save_mirnet_checkpoint,
)
from tests.conftest import shared_dir

SHARED_DIR = shared_dir()
LAYOUT_JSON = SHARED_DIR / "checkpoints" / "mirnet-dblasko.json"

SMALL: dict[str, Any] = {"num_features": 16, "number_rrg": 1, "number_msrb": 1}
TINY: dict[str, Any] = {"num_features": 8, "number_rrg": 1, "number_msrb": 1}
DEFAULTS = {
    "in_channels": 3,
    "out_channels": 3,
    "num_features": 64,
    "kernel_size": 3,
    "stride": 2,
    "number_msrb": 2,
    "number_rrg": 3,
    "height": 3,
    "width": 2,
    "bias": False,
}
# Copies of a dual-attention unit along the width (index 1 and up); the reference shares them.
WIDTH_COPY = re.compile(r"dual_attention_units\.\d+\.[1-9]\d*\.")


@pytest.fixture(scope="module")
def layout() -> dict[str, Any]:
    if not LAYOUT_JSON.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{LAYOUT_JSON} is missing; CI must provide the shared folder")
        pytest.skip(f"{LAYOUT_JSON} not found (set DARKROOM_SHARED_DIR to the shared folder)")
    return json.loads(LAYOUT_JSON.read_text())


@pytest.fixture(scope="module")
def meta_default_model() -> MIRNet:
    """The full-size model without allocating or initialising 42M weights."""
    with torch.device("meta"):
        return MIRNet()


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


def _shapes(state_dict: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in state_dict.items()}


def test_default_model_has_the_published_layout(
    layout: dict[str, Any], meta_default_model: MIRNet
) -> None:
    assert _shapes(meta_default_model.state_dict()) == layout["state_dict"]
    assert len(layout["state_dict"]) == 869
    assert layout["hyperparameters"] == DEFAULTS


def test_parameter_count_matches_the_reference(
    layout: dict[str, Any], meta_default_model: MIRNet
) -> None:
    # The reference counts ``p.numel() for p in model.parameters()``, and ``parameters()`` yields
    # its shared width copies of each dual-attention unit once: that is the published 32,212,944.
    # Here the copies are distinct modules, so all parameters number 42,664,842, the sum over the
    # JSON's keys without the constant ``filt`` buffers; leaving the copies out gives the
    # reference's figure.
    named = dict(meta_default_model.named_parameters())
    unique = sum(p.numel() for name, p in named.items() if not WIDTH_COPY.search(name))
    assert unique == layout["parameter_count"] == 32_212_944

    in_json = sum(
        math.prod(shape) for key, shape in layout["state_dict"].items() if not key.endswith(".filt")
    )
    assert sum(p.numel() for p in named.values()) == in_json == 42_664_842


def test_hyperparameters_derive_from_the_published_layout(layout: dict[str, Any]) -> None:
    shapes = {key: torch.empty(shape, device="meta") for key, shape in layout["state_dict"].items()}
    assert mirnet_hyperparameters(shapes) == layout["hyperparameters"]


@pytest.mark.parametrize(
    "overrides",
    [
        SMALL,
        {**SMALL, "number_rrg": 2, "number_msrb": 3},
        {**SMALL, "width": 3},
        {**SMALL, "width": 1},
        {**SMALL, "height": 2},
        {**SMALL, "bias": True},
        {**SMALL, "in_channels": 4, "out_channels": 4, "num_features": 24},
    ],
)
def test_hyperparameters_derive_from_any_mirnet(overrides: dict[str, Any]) -> None:
    with torch.device("meta"):
        model = MIRNet(**overrides)
    assert mirnet_hyperparameters(model.state_dict()) == {**DEFAULTS, **overrides}


def test_round_trip_through_the_reference_file_layout(tmp_path: Path) -> None:
    model = MIRNet(**SMALL).eval()
    path = tmp_path / "small.pth"
    # The published files keep optimizer and scheduler state beside the weights.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    save_mirnet_checkpoint(
        model, path, extra={"optimizer_state_dict": optimizer.state_dict(), "epoch": 100}
    )
    assert set(torch.load(path, weights_only=True)) == {
        "model_state_dict",
        "optimizer_state_dict",
        "epoch",
    }

    loaded = load_mirnet(path)

    assert not loaded.training
    assert mirnet_hyperparameters(loaded.state_dict()) == {**DEFAULTS, **SMALL}
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_bare_and_data_parallel_state_dicts_load(tmp_path: Path) -> None:
    model = MIRNet(**SMALL).eval()
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    wrapped = tmp_path / "data_parallel.pth"
    prefixed = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"model_state_dict": prefixed}, wrapped)

    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        for path in (bare, wrapped):
            assert torch.equal(load_mirnet(path)(x), expected)


@pytest.mark.slow  # the full-size MIRNet
def test_a_file_with_the_published_layout_loads_unchanged(
    tmp_path: Path, layout: dict[str, Any]
) -> None:
    # Like the published files: the reference layout, optimizer state beside, and each unit's width
    # copies stored as one shared tensor (what ``[unit] * width`` produces).
    weights: dict[str, torch.Tensor] = {}
    for key, shape in layout["state_dict"].items():
        original = re.sub(r"(dual_attention_units\.\d+)\.\d+\.", r"\1.0.", key)
        weights[key] = weights[original] if original in weights else torch.randn(shape) * 0.01
    path = tmp_path / "mirnet-published-layout.pth"
    torch.save({"model_state_dict": weights, "optimizer_state_dict": {"state": {}}}, path)

    model = load_mirnet(path)  # strict=True inside: no key missing, none unexpected

    loaded = model.state_dict()
    assert _shapes(loaded) == layout["state_dict"]
    assert all(torch.equal(loaded[key], value) for key, value in weights.items())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def _fill_deterministically(model: MIRNet) -> None:
    """Weights that depend only on parameter names, width copies equal as in the reference."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            shared_name = re.sub(r"(dual_attention_units\.\d+)\.\d+", r"\1.0", name)
            phase = zlib.crc32(shared_name.encode()) % 1000 / 100.0
            wave = torch.sin(torch.arange(parameter.numel(), dtype=torch.float64) * 0.37 + phase)
            if parameter.ndim == 4:
                parameter.copy_((wave / math.sqrt(parameter[0].numel())).view_as(parameter))
            else:
                parameter.copy_((0.1 * wave).view_as(parameter))


def test_computes_the_reference_function() -> None:
    # Expected numbers come from running the reference code (model/MIRNet at commit 8e48c421) on
    # the same weights and input; key names alone would not catch a reordered or dropped operation.
    model = MIRNet(**TINY).eval()
    _fill_deterministically(model)
    x = torch.cos(torch.arange(3 * 8 * 12, dtype=torch.float64) * 0.11).view(1, 3, 8, 12)
    x = (x * 0.5 + 0.5).float()

    with torch.no_grad():
        residual = model(x) - x

    close: dict[str, Any] = {"rel": 1e-4, "abs": 1e-5}
    assert residual.sum().item() == pytest.approx(40.34303665161133, **close)
    assert residual.abs().sum().item() == pytest.approx(68.48979949951172, **close)
    assert residual[0, :, 3, 5].tolist() == pytest.approx(
        [0.2598269581794739, -0.021902188658714294, -0.2626081705093384], **close
    )
    assert residual[0, :, 7, 0].tolist() == pytest.approx(
        [0.08706574141979218, -0.02896702289581299, -0.0907442569732666], **close
    )


@pytest.mark.parametrize(
    "size", [(SIZE_MULTIPLE, SIZE_MULTIPLE), (8, 12), (20, 16), (3 * SIZE_MULTIPLE, 36)]
)
def test_output_matches_input_shape_for_valid_sizes(size: tuple[int, int]) -> None:
    model = MIRNet(**TINY).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert model(x).shape == x.shape


@pytest.mark.parametrize("size", [(SIZE_MULTIPLE + 2, SIZE_MULTIPLE), (8, 10), (7, 8)])
def test_sizes_off_the_multiple_are_rejected_by_the_network(size: tuple[int, int]) -> None:
    # Documents why SIZE_MULTIPLE is 4: callers must pad to it.
    model = MIRNet(**TINY).eval()
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(torch.rand(1, 3, *size))


def _write_text(path: Path) -> None:
    path.write_text("not a checkpoint")


def _write_other_model(path: Path) -> None:
    torch.save({"model_state_dict": {"backbone.weight": torch.zeros(4, 3, 3, 3)}}, path)


def _write_extra_key(path: Path) -> None:
    state_dict = MIRNet(**SMALL).state_dict()
    state_dict["head.weight"] = torch.zeros(1)
    torch.save({"model_state_dict": state_dict}, path)


def _write_missing_key(path: Path) -> None:
    state_dict = MIRNet(**SMALL).state_dict()
    del state_dict["msrb_blocks.0.blocks.0.out_conv.weight"]
    torch.save(state_dict, path)


def _write_list(path: Path) -> None:
    torch.save([torch.zeros(1)], path)


@pytest.mark.parametrize(
    "write",
    [_write_text, _write_other_model, _write_extra_key, _write_missing_key, _write_list],
)
def test_a_file_that_is_not_a_mirnet_checkpoint_raises_value_error(
    write: Callable[[Path], None], tmp_path: Path
) -> None:
    path = tmp_path / "bogus.pth"
    write(path)
    with pytest.raises(ValueError, match="not a MIRNet"):
        load_mirnet(path)


def test_a_missing_file_is_not_reported_as_a_bad_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_mirnet(tmp_path / "absent.pth")
