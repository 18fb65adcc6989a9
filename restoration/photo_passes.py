"""The passes a model makes over the whole photo, before it is cut into tiles and after.

Most models see their tiles alone. Darkroom's night models decide exposure from the whole
frame, because tile by tile every tile would pick its own and the photo would come out a
patchwork: v1 adds up one global gain over the photo and hands it to every tile; v2 exposes the
photo region by region and its tiles are cut from the exposed photo, and once they are stitched
it cleans the colour of the shadows it lifted (``restoration.chroma_cleanup``), on the whole photo
for the same reason. Of the published lightweight models, Zero-DCE++ estimates its curve map on
the whole photo shrunk, and IAT its gamma and colour matrix on the whole photo (``photo_inputs``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch

from restoration.chroma_cleanup import SHIPPED, ChromaCleanup
from restoration.device.precision import autocast
from shared.catalogue import ModelEntry


class PhotoPass(NamedTuple):
    """What a model's whole-photo pass gives its tiles (``TiledRestorer.per_photo``)."""

    tiles_from: torch.Tensor
    """1 x C x H x W: what the tiles are cut from (the photo itself for most models)."""
    extras: tuple[torch.Tensor, ...] = ()
    """Per-photo inputs every tile takes besides (``1 x ...`` each)."""
    finish: Callable[[torch.Tensor], torch.Tensor] | None = None
    """What runs on the stitched photo (1 x 3 x H x W) before it is clamped: the night model
    v2's chroma clean-up; None for most models."""


GAIN_PIECE_MIN = 256
"""Smallest side of the pieces the night model's exposure statistics are gathered on."""


class ExposureNetwork(Protocol):
    """What the whole-photo exposure pass needs of a network (``NightNAFNet`` has it)."""

    def gain_stats(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def log_gain_from_stats(self, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor: ...


def global_gain(
    model: ExposureNetwork, entry: ModelEntry, dtype: torch.dtype | None
) -> Callable[[torch.Tensor], PhotoPass]:
    """The night model picks an exposure from the whole frame; tile by tile, every tile would
    pick its own. Estimate it once on the whole photo and give it to every tile."""

    def prepare(image: torch.Tensor) -> PhotoPass:
        if not entry.tile or max(image.shape[-2:]) <= entry.tile:
            return PhotoPass(image)  # one tile: the model already sees the whole photo
        # The gain head averages over positions, so sums over pieces of the photo add up to
        # the whole photo's; pieces of one tile keep memory bounded at full resolution. The
        # last piece of a row or column can be as thin as one pixel: the network pads it
        # (``restoration.padding.pad_to``), by replicating where reflection does not fit.
        step = max(entry.tile, GAIN_PIECE_MIN)
        sums: torch.Tensor | None = None
        counts: torch.Tensor | None = None
        with torch.inference_mode():
            for y in range(0, image.shape[2], step):
                for x in range(0, image.shape[3], step):
                    # The network under autocast; its statistics come out, and add up, in
                    # float32 (``gain_stats``), and the gain head runs outside it.
                    with autocast(dtype, image.device):
                        piece_sums, piece_counts = model.gain_stats(
                            image[:, :, y : y + step, x : x + step]
                        )
                    sums = piece_sums if sums is None else sums + piece_sums
                    counts = piece_counts if counts is None else counts + piece_counts
            assert sums is not None and counts is not None  # the photo has at least one piece
            return PhotoPass(image, (model.log_gain_from_stats(sums, counts),))

    return prepare


class LocalExposureNetwork(Protocol):
    """What the whole-photo exposure pass of the night model v2 needs (``NightNAFNetV2``)."""

    def expose(self, image: torch.Tensor) -> torch.Tensor: ...

    def log_gain_of(self, exposed: torch.Tensor) -> torch.Tensor: ...


def local_exposure(
    model: LocalExposureNetwork, cleanup: ChromaCleanup = SHIPPED
) -> Callable[[torch.Tensor], PhotoPass]:
    """The night model v2 decides exposure on the whole frame, restores the exposed photo (4
    channels: the photo and the gain each pixel got) tile by tile, and cleans the chroma of the
    stitched photo by the gain each pixel got."""

    def prepare(image: torch.Tensor) -> PhotoPass:
        with torch.inference_mode():
            exposed = model.expose(image)
        log_gain = model.log_gain_of(exposed)

        def finish(restored: torch.Tensor) -> torch.Tensor:
            # no_grad, not inference_mode: the restorer clamps the result in place.
            with torch.no_grad():
                return cleanup(restored, log_gain)

        return PhotoPass(exposed, finish=finish)

    return prepare


class PhotoInputsNetwork(Protocol):
    """A network that says itself what its whole-photo pass gives the tiles (``ZeroDCEPlusPlus``,
    ``IAT``): what they are cut from, and per-photo inputs (``1 x ...``) every tile takes."""

    def photo_inputs(
        self, image: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]: ...


def photo_inputs(
    model: PhotoInputsNetwork, dtype: torch.dtype | None
) -> Callable[[torch.Tensor], PhotoPass]:
    """The network's own whole-photo pass, run once per photo before its tiles."""

    def prepare(image: torch.Tensor) -> PhotoPass:
        with torch.inference_mode(), autocast(dtype, image.device):
            tiles_from, extras = model.photo_inputs(image)
        return PhotoPass(tiles_from.to(image.dtype), tuple(e.float() for e in extras))

    return prepare
