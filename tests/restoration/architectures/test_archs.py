"""The registry of Darkroom's own architectures, and every catalogue architecture restoring any
size through the worker's restorer: real networks, tiny, with seeded random weights, at the
catalogue's tile settings. Includes NPE_89's shape, which used to fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch

from restoration.architectures import ARCHITECTURES
from restoration.loading import load_restorer
from restoration.padding import SizeRequirements
from shared.catalogue import CATALOGUE, OWN_ARCHITECTURES, ModelEntry
from shared.config import Settings
from shared.errors import ModelUnavailable
from tests.restoration.architectures.arch_cases import entries_by_tiling, save_tiny, strip_sizes

CPU = torch.device("cpu")
OWN_ENTRIES = [entry for entry in entries_by_tiling() if entry.architecture in ARCHITECTURES]
SPANDREL_ENTRIES = [entry for entry in entries_by_tiling() if entry not in OWN_ENTRIES]
SPANDREL_SIZES = [(1, 1), (2, 3), (1, 50), (50, 1)]
SLOW_ON_STRIPS = {"IPT", "SCUNet"}
"""Tens of seconds for the boundary strips on a CPU even tiny: tiny sizes only for these."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pixels(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 31 + width).random((height, width, 3), dtype=np.float32)


def _restore_all(entry: ModelEntry, folder: Path, sizes: list[tuple[int, int]]) -> None:
    restorer = load_restorer(entry, save_tiny(entry, folder), CPU, Settings(home=folder))
    for height, width in sizes:
        restored = restorer.restore(_pixels(height, width))
        assert restored.shape == (height * entry.scale, width * entry.scale, 3), (height, width)
        assert np.isfinite(restored).all(), (height, width)


def test_the_registry_names_the_catalogues_own_architectures() -> None:
    assert sorted(ARCHITECTURES) == sorted(OWN_ARCHITECTURES)
    assert len(ARCHITECTURES) == len(OWN_ARCHITECTURES)
    assert all(arch.name == name for name, arch in ARCHITECTURES.items())


def test_every_catalogue_architecture_is_either_ours_or_spandrels() -> None:
    for entry in CATALOGUE.values():
        ours = entry.architecture in ARCHITECTURES
        assert ours != (entry.architecture in spandrel.MAIN_REGISTRY), entry.name


def test_each_loader_reads_its_own_checkpoints_and_refuses_the_others(tmp_path: Path) -> None:
    files = {}
    for name, arch in ARCHITECTURES.items():
        entry = next(e for e in CATALOGUE.values() if e.architecture == name)
        files[name] = save_tiny(entry, tmp_path)
        network = arch.load(files[name])
        assert not network.training
        assert isinstance(network.size_requirements, SizeRequirements)
    for name, arch in ARCHITECTURES.items():
        for other, path in files.items():
            if other != name:
                with pytest.raises(ValueError):
                    arch.load(path)


def test_an_own_architecture_missing_from_the_registry_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = CATALOGUE["mirnet-lol"]
    path = save_tiny(entry, tmp_path)
    monkeypatch.delitem(ARCHITECTURES, "mirnet")
    with pytest.raises(ModelUnavailable, match="not registered in restoration.architectures"):
        load_restorer(entry, path, CPU, Settings(home=tmp_path))


def test_a_file_spandrel_cannot_read_makes_the_model_unavailable(tmp_path: Path) -> None:
    """``UnsupportedCheckpoint`` is a typed error of its own, not a ``ValueError``; the restorer
    still reports it as the model being unavailable, without the server's path."""
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    entry = CATALOGUE["nafnet-gopro"]
    with pytest.raises(ModelUnavailable) as raised:
        load_restorer(entry, path, CPU, Settings(home=tmp_path))
    # The tenant reads that the model cannot run here; the path and the reason go to the log.
    assert "nafnet-gopro" in raised.value.message and str(tmp_path) not in raised.value.message


@pytest.mark.parametrize("entry", OWN_ENTRIES, ids=lambda entry: entry.name)
def test_own_architectures_restore_any_size(entry: ModelEntry, tmp_path: Path) -> None:
    """Tiny photos, odd sizes, and strips at and around every tile boundary: through the
    padding, the tiling and (night model) the whole-photo exposure pass, whose last pieces
    are as thin as one pixel."""
    _restore_all(entry, tmp_path, strip_sizes(entry))


@pytest.mark.parametrize("entry", SPANDREL_ENTRIES, ids=lambda entry: entry.name)
def test_spandrel_architectures_restore_tiny_photos_and_strips(
    entry: ModelEntry, tmp_path: Path
) -> None:
    """Sides that need padding longer than themselves (IPT pads to 48, SCUNet to 40, FFTformer
    to multiples of 32), and strips at every tile boundary where that is cheap; every size
    is also covered with a stand-in model in ``test_tiling``."""
    slow = entry.architecture in SLOW_ON_STRIPS
    _restore_all(entry, tmp_path, SPANDREL_SIZES if slow else strip_sizes(entry))


def test_npe_89_restores_with_the_night_models_tiles(tmp_path: Path) -> None:
    """NPE_89.png of the real-dim set is 774 x 1032 and failed with internal_error "Padding
    size should be less than the corresponding input dimension ... input [1, 3, 8, 774]".
    The night model gathers its exposure over pieces of one tile (1024 px): the last row of
    pieces is 8 px high, and the network reflect-padded it to its multiple of 16."""
    entry = CATALOGUE["darkroom-night-v1"]
    assert (entry.tile, entry.overlap) == (1024, 64)
    restorer = load_restorer(entry, save_tiny(entry, tmp_path), CPU, Settings(home=tmp_path))
    pixels = _pixels(1032, 774)
    restored = restorer.restore(pixels)
    assert restored.shape == pixels.shape
    assert np.isfinite(restored).all()
