"""Every catalogue architecture built tiny with seeded random weights, and the image sizes that
stress its padding and tiling rules (shared by ``test_padding``, ``test_tiling``, ``test_archs``).

Tiny hyper-parameters keep the networks cheap to build; their size requirements are what the
published ones have (spandrel derives them from the architecture, not the width), except the
night network's, which follows its depth: built with the shipped four levels it needs 16.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import torch
from spandrel import ModelLoader
from spandrel.architectures.DnCNN import DnCNN
from spandrel.architectures.FFTformer import FFTformer
from spandrel.architectures.IPT import IPT
from spandrel.architectures.NAFNet import NAFNet
from spandrel.architectures.RetinexFormer import RetinexFormer
from spandrel.architectures.SCUNet import SCUNet

from restoration.architectures import ARCHITECTURES, OwnNetwork, tile_requirements
from restoration.architectures.iat import IAT
from restoration.architectures.mirnet import MIRNet, save_mirnet_checkpoint
from restoration.architectures.nafnet_night import NightNAFNet, save_night
from restoration.architectures.nafnet_night_v2 import NightNAFNetV2, save_night_v2
from restoration.architectures.sci import SCI
from restoration.architectures.zero_dce import ZeroDCE, ZeroDCEPlusPlus
from restoration.padding import SizeRequirements
from restoration.spandrel_models import size_requirements_of
from restoration.tile_plan import TileConfig, tile_and_overlap
from shared.catalogue import CATALOGUE, ModelEntry

MAX_ASPECT = 50
"""Strips up to this aspect ratio: the API's limit is of this order, and a 1 x N strip beyond it
is thousands of mostly-padding tiles."""


def tiny_mirnet() -> MIRNet:
    torch.manual_seed(0)
    return MIRNet(num_features=8, number_msrb=1, number_rrg=1).eval()


def tiny_night(levels: int = 4) -> NightNAFNet:
    """Shipped depth (four levels, sides a multiple of 16) at a fraction of the width."""
    torch.manual_seed(0)
    return NightNAFNet(
        width=4, enc_blocks=[1] * levels, middle_blocks=1, dec_blocks=[1] * levels
    ).eval()


def tiny_night_v2(levels: int = 4) -> NightNAFNetV2:
    """The v2 network at the shipped depth and a fraction of the width."""
    torch.manual_seed(0)
    model = NightNAFNetV2(
        width=4, enc_blocks=[1] * levels, middle_blocks=1, dec_blocks=[1] * levels, exposure_width=4
    )
    # Its heads start at zero (one curve for every photo); random ones make the exposure
    # depend on the photo, as trained weights do.
    for head in (model.exposure.to_maps, model.exposure.to_white_balance):
        torch.nn.init.normal_(head.weight, std=0.5)
    return model.eval()


PUBLISHED_BUILDERS: dict[str, Callable[[], OwnNetwork]] = {
    "zero-dce": ZeroDCE,
    "zero-dce-pp": ZeroDCEPlusPlus,
    "sci": SCI,
    "iat": IAT,
}
"""The published lightweight architectures at their real size (they are small already), with
seeded random weights, saved as plain state dicts like the authors' files."""


def published(arch: str) -> OwnNetwork:
    torch.manual_seed(0)
    return PUBLISHED_BUILDERS[arch]().eval()


SPANDREL_BUILDERS: dict[str, Callable[[], torch.nn.Module]] = {
    "DnCNN": lambda: DnCNN(in_nc=3, out_nc=3, nc=8, nb=20, act_mode="R"),
    "NAFNet": lambda: NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1]),
    "RetinexFormer": lambda: RetinexFormer(n_feat=8, stage=1, num_blocks=[1, 1, 1]),
    "SCUNet": lambda: SCUNet(config=[1, 1, 1, 1, 1, 1, 1], dim=64),
    "FFTformer": lambda: FFTformer(
        dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1, ffn_expansion_factor=1
    ),
    # Published IPT patches are 48 px; spandrel fixes 12 heads, so n_feats * 9 divides by 12.
    "IPT": lambda: IPT(patch_size=48, patch_dim=3, n_feats=12, num_layers=1),
}


def spandrel_module(arch: str, scale: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "IPT":
        return IPT(patch_size=48, patch_dim=3, n_feats=12, num_layers=1, scale=[scale]).eval()
    return SPANDREL_BUILDERS[arch]().eval()


def save_tiny(entry: ModelEntry, folder: Path) -> Path:
    """A tiny checkpoint for ``entry``'s architecture, in the layout its loader reads."""
    path = folder / entry.weights_file
    if entry.architecture == "mirnet":
        save_mirnet_checkpoint(tiny_mirnet(), path)
    elif entry.architecture == "nafnet-night":
        save_night(tiny_night(), path)
    elif entry.architecture == "nafnet-night-v2":
        save_night_v2(tiny_night_v2(), path)
    elif entry.architecture in PUBLISHED_BUILDERS:
        torch.save(published(entry.architecture).state_dict(), path)
    else:
        torch.save(spandrel_module(entry.architecture, entry.scale).state_dict(), path)
    return path


@functools.cache
def requirements(arch: str) -> SizeRequirements:
    """What the restorer pads ``arch``'s tiles to (the network's own, for spandrel's)."""
    if arch == "mirnet":
        return tile_requirements(tiny_mirnet())
    if arch == "nafnet-night":
        return tile_requirements(tiny_night())
    if arch == "nafnet-night-v2":
        return tile_requirements(tiny_night_v2())
    if arch in PUBLISHED_BUILDERS:
        return tile_requirements(published(arch), ARCHITECTURES[arch].tile_multiple)
    loader = ModelLoader("cpu")
    return size_requirements_of(loader.load_from_state_dict(spandrel_module(arch).state_dict()))


def entries_by_tiling() -> list[ModelEntry]:
    """One catalogue entry per distinct (architecture, tile, overlap, scale)."""
    seen: dict[tuple[str, int, int, int], ModelEntry] = {}
    for entry in CATALOGUE.values():
        seen.setdefault((entry.architecture, entry.tile, entry.overlap, entry.scale), entry)
    return list(seen.values())


TINY_SIZES = [(1, 1), (1, 2), (2, 1), (2, 3), (3, 2), (1, 50), (50, 1), (7, 13), (13, 7)]
"""(height, width) of tiny photos and 1 x N / N x 1 strips."""


def _strips(length: int) -> list[tuple[int, int]]:
    """``length`` x the narrowest side within :data:`MAX_ASPECT`, both ways round."""
    short = max(1, math.ceil(length / MAX_ASPECT))
    return [(length, short), (short, length)]


def boundary_lengths(entry: ModelEntry) -> list[int]:
    """Sides just below, at and just above each place the tile count changes: one tile
    (``T``) and two (``2T - overlap``), for the tile the model really gets."""
    size = requirements(entry.architecture)
    tile, overlap = tile_and_overlap(TileConfig(tile=entry.tile, overlap=entry.overlap), size)
    return sorted({n + d for n in (tile, 2 * tile - overlap) for d in (-1, 0, 1)})


def strip_sizes(entry: ModelEntry) -> list[tuple[int, int]]:
    """Tiny sizes, odd sizes, and strips at every tile boundary of ``entry``: cheap enough for
    a real network, since a strip's short side is at most ``boundary / MAX_ASPECT``."""
    sizes = [*TINY_SIZES, (37, 53), (53, 37)]
    for length in boundary_lengths(entry):
        sizes += _strips(length)
    return sizes


def all_sizes(entry: ModelEntry) -> list[tuple[int, int]]:
    """:func:`strip_sizes` plus a square just above one tile (for cheap models)."""
    just_over_one_tile = boundary_lengths(entry)[2]
    return [*strip_sizes(entry), (just_over_one_tile, just_over_one_tile)]
