"""The published lightweight models on their real files reproduce their authors' outputs.

``../shared/reference-models`` holds each published weight file (byte-identical to the authors'
repositories), inputs, and what the authors' own code made of them under their test scripts'
preprocessing, as 16-bit PNGs. Every catalogue entry is loaded from that folder as the model
folder, through the worker's restorer cache (SHA-256 check, loader, tiling: the path jobs
take), and must come within the manifest's tolerance of every reference output. The slips at
the end show the comparison catches the mistakes a re-implementation makes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import png
import pytest
import torch
from PIL import Image

from restoration.architectures import ARCHITECTURES
from restoration.architectures.zero_dce import ZeroDCEPlusPlus, auto_scale_factor
from restoration.cache import RestorerCache
from restoration.loading import load_restorer
from shared.catalogue import CATALOGUE, ModelEntry, ModelStore
from shared.config import Settings
from shared.errors import ModelUnavailable
from shared.storage import make_storage
from tests.conftest import shared_dir

PACK = shared_dir() / "reference-models"
CPU = torch.device("cpu")

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "zero-dce": ("zero-dce", {}),
    "zero-dce-pp-s1": ("zero-dce-pp", {"scale_factor": 1}),
    "zero-dce-pp-s12": ("zero-dce-pp", {"scale_factor": 12}),
    "sgz-s1": ("sgz", {"scale_factor": 1}),
    "sgz-s12": ("sgz", {"scale_factor": 12}),
    "sci-medium": ("sci-medium", {}),
    "sci-difficult": ("sci-difficult", {}),
    "iat-lol-v1": ("iat-lol", {}),
    "iat-exposure": ("iat-exposure", {}),
    "dncnn-color-blind": ("dncnn-color", {}),
}
"""Manifest id -> the catalogue entry and the loader options the reference script ran with
(Zero-DCE++ and SGZ at the script's fixed scale; the catalogue's own scale is chosen per photo)."""


@cache
def manifest() -> dict[str, dict[str, Any]]:
    path = PACK / "manifest.json"
    assert path.is_file(), f"the conformance pack is missing: {path} (set DARKROOM_SHARED_DIR)"
    return {item["id"]: item for item in json.loads(path.read_text())}


def read_png16(path: Path) -> np.ndarray:
    """A 16-bit RGB PNG as float64 in [0, 1]: Pillow would read it as 8-bit."""
    width, height, rows, info = png.Reader(filename=str(path)).read()
    assert info["bitdepth"] == 16 and info["planes"] == 3, info
    codes = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return codes.reshape(height, width, 3) / 65535.0


def reference_input(output: dict[str, Any]) -> np.ndarray:
    """The 8-bit input as the authors' scripts feed it: /255, cropped from the top-left to the
    output's size (Zero-DCE++'s script crops to multiples of its scale)."""
    pixels = np.asarray(Image.open(PACK / output["input"]).convert("RGB"), dtype=np.float32)
    height, width = output["shape_hw"]
    return np.ascontiguousarray(pixels[:height, :width] / 255.0)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("published")
    return Settings(
        home=home,
        model_dir=PACK / "weights",
        device="cpu",
        allow_noncommercial_models=True,
    )


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def entry_for(case: str) -> ModelEntry:
    name, options = CASES[case]
    return dataclasses.replace(CATALOGUE[name], arch_options=options)


def worst_error(case: str, settings: Settings) -> float:
    """The largest difference from the authors' outputs over every input of ``case``, restored
    through the restorer cache as a job would be."""
    store = ModelStore(settings, make_storage(settings))
    restorer = RestorerCache(settings, store).get(entry_for(case))
    worst = 0.0
    for output in manifest()[case]["outputs"]:
        restored = restorer.restore(reference_input(output))
        expected = read_png16(PACK / output["file"])
        assert restored.shape == expected.shape
        worst = max(worst, float(np.abs(restored.astype(np.float64) - expected).max()))
    return worst


def tolerance(case: str) -> float:
    return float(manifest()[case]["tolerance"]["max_abs_vs_png"])


AWAITING = {
    "mobileie-lolv1",
    "mobileie-lolv2-real",
    "cpga-net-plus-lolv1",
    "cpga-net-plus-bdsf-lolv1",
    "cpga-net-pp-lolv1",
    "flol-plus-lolv2-real",
    "flol-plus-uhdll",
}
"""The 2024-2025 lightweight models the pack added, which issue #30 implements: each moves
into :data:`CASES` when its architecture lands."""


def test_every_reference_model_has_a_case() -> None:
    conformance = {key for key, item in manifest().items() if item["outputs"]}
    assert conformance - AWAITING == set(CASES)
    assert not AWAITING & set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_catalogue_entry_names_the_published_file(case: str) -> None:
    """URL, digest, file name, size and licence flag as the manifest records them, so
    ``darkroom models pull`` fetches and verifies the authors' file."""
    item = manifest()[case]
    entry = CATALOGUE[CASES[case][0]]
    assert entry.urls == (item["source"]["raw_url"],)
    assert entry.sha256 == item["weight"]["sha256"]
    assert entry.weights_file == Path(item["weight"]["pack_file"]).name
    assert entry.parameters == item["params_inference"]
    assert entry.noncommercial == item["licence_test_only"]


@pytest.mark.parametrize("case", sorted(set(CASES) - {"dncnn-color-blind"}))
def test_our_implementation_runs_the_published_parameter_count(case: str) -> None:
    name, options = CASES[case]
    network = ARCHITECTURES[CATALOGUE[name].architecture].load(
        PACK / "weights" / CATALOGUE[name].weights_file, **options
    )
    assert sum(p.numel() for p in network.parameters()) == manifest()[case]["params_inference"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_published_weights_reproduce_the_authors_outputs(case: str, settings: Settings) -> None:
    assert worst_error(case, settings) <= tolerance(case)


def _wrap_interpolate(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[dict[str, Any]], None]
) -> None:
    original = torch.nn.functional.interpolate

    def slipped(*args: Any, **kwargs: Any) -> torch.Tensor:
        change(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr("restoration.architectures.zero_dce.F.interpolate", slipped)


def _upsample_without_corners(kwargs: dict[str, Any]) -> None:
    if kwargs.get("align_corners"):
        kwargs["align_corners"] = False


def _antialiased_downsampling(kwargs: dict[str, Any]) -> None:
    if kwargs.get("align_corners") is False:
        kwargs["antialias"] = True


def _four_curves(x: torch.Tensor, maps: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    for a in list(maps)[:4]:
        x = x + a * (torch.pow(x, 2) - x)
    return x


def _slipped_loader(
    monkeypatch: pytest.MonkeyPatch, arch: str, slip: Callable[[torch.nn.Module], None]
) -> None:
    own = ARCHITECTURES[arch]

    def load(path: Path, **options: Any) -> Any:
        network = own.load(path, **options)
        slip(network)
        return network

    monkeypatch.setitem(ARCHITECTURES, arch, dataclasses.replace(own, load=load))


def _batchnorm_eps(network: torch.nn.Module) -> None:
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 1e-3


def _colour_matrix_transposed(network: torch.nn.Module) -> None:
    base = network.global_net.color_base  # type: ignore[union-attr]
    base.data = base.data.T.contiguous()


SLIPS: dict[str, tuple[str, Callable[[pytest.MonkeyPatch], None]]] = {
    "zero-dce-pp upsampling with align_corners=False": (
        "zero-dce-pp-s12",
        lambda mp: _wrap_interpolate(mp, _upsample_without_corners),
    ),
    "zero-dce-pp antialiased downsampling": (
        "zero-dce-pp-s12",
        lambda mp: _wrap_interpolate(mp, _antialiased_downsampling),
    ),
    "zero-dce returning its first output (after four of its eight curves)": (
        "zero-dce",
        lambda mp: mp.setattr("restoration.architectures.zero_dce.apply_curve", _four_curves),
    ),
    "sci with BatchNorm eps 1e-3": (
        "sci-medium",
        lambda mp: _slipped_loader(mp, "sci", _batchnorm_eps),
    ),
    "iat with its colour matrix transposed": (
        "iat-lol-v1",
        lambda mp: _slipped_loader(mp, "iat", _colour_matrix_transposed),
    ),
}


@pytest.mark.parametrize("slip", sorted(SLIPS))
def test_a_slip_in_the_implementation_breaks_conformance(
    slip: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    case, make = SLIPS[slip]
    make(monkeypatch)
    assert worst_error(case, settings) > 10 * tolerance(case)


def test_the_ffdnet_file_is_refused_before_any_job_runs_it(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """spandrel 0.4.2 takes KAIR's colour FFDNet for a 12-channel FDnCNN, which raises a
    channel-count RuntimeError on every RGB photo: the restorer refuses it at load instead,
    telling the operator why (the log) and the tenant only that the model cannot run here."""
    entry = dataclasses.replace(
        CATALOGUE["dncnn-color"], name="ffdnet-color", weights_file="kair_ffdnet_color.pth"
    )
    path = PACK / "weights" / entry.weights_file
    with caplog.at_level(logging.ERROR), pytest.raises(ModelUnavailable) as raised:
        load_restorer(entry, path, CPU, settings)
    assert "ffdnet-color" in raised.value.message and str(path) not in raised.value.message
    assert "12 input and 12 output channels" in caplog.text and str(path) in caplog.text


@pytest.mark.parametrize("name", ["zero-dce", "zero-dce-pp", "sci-medium", "iat-lol"])
def test_a_photo_larger_than_a_tile_comes_out_as_from_the_whole_network(
    name: str, settings: Settings
) -> None:
    """The tiles of a photo several tiles large, stitched, against the network run on the
    whole photo at once (what the authors' scripts do): the whole-photo passes (Zero-DCE++'s
    curve map, IAT's gamma and colour) keep the photo whole, and the overlap covers the local
    layers' reach."""
    entry = CATALOGUE[name]
    rng = np.random.default_rng(7)
    height, width = entry.tile + 150, 2 * entry.tile + 40
    coarse = rng.random((height // 30 + 2, width // 30 + 2, 3), dtype=np.float32) * 0.3
    smooth = torch.nn.functional.interpolate(
        torch.from_numpy(coarse).permute(2, 0, 1)[None], size=(height, width), mode="bilinear"
    )
    photo = (
        smooth + 0.02 * torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    ).clamp(0, 1)
    store = ModelStore(settings, make_storage(settings))
    restorer = RestorerCache(settings, store).get(entry)
    tiled = restorer.restore(np.ascontiguousarray(photo[0].permute(1, 2, 0).numpy()))
    network = ARCHITECTURES[entry.architecture].load(store.local_weights(entry))
    with torch.inference_mode():
        inputs = network.photo_inputs(photo) if hasattr(network, "photo_inputs") else (photo, ())
        whole = network(inputs[0], *inputs[1]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    assert np.abs(tiled - whole).max() <= 2e-5


def test_zero_dce_pp_estimates_large_photos_at_most_512_px_a_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The catalogue's scale rule: ceil(longer side / 512), so a 12-megapixel photo costs the
    network 504 x 378 pixels and the curve, a few operations a pixel, does the rest."""
    assert [auto_scale_factor(h, w) for h, w in [(300, 512), (10, 513), (3024, 4032)]] == [1, 2, 8]
    seen: list[tuple[int, ...]] = []
    network = ZeroDCEPlusPlus()
    original = network.curve_maps
    monkeypatch.setattr(network, "curve_maps", lambda x: seen.append(tuple(x.shape)) or original(x))
    photo = torch.rand(1, 3, 1500, 2100)
    with torch.inference_mode():
        tiles_from, extras = network.photo_inputs(photo)
    assert seen == [(1, 3, 1500 // 5, 2100 // 5)]
    assert tiles_from.shape == (1, 6, 1500, 2100) and extras == ()
