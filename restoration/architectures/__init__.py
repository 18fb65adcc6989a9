"""Network architectures Darkroom runs itself, and the registry of how to load and tile each.

:data:`ARCHITECTURES` maps the catalogue's architecture name (``ModelEntry.architecture``) to an
:class:`OwnArchitecture`; ``restoration.loading`` looks a model up here, and anything not here is
loaded through spandrel. It is the workers' source of truth for which architectures are
Darkroom's own (``shared.catalogue.OWN_ARCHITECTURES`` names the same ones; a test keeps the two
equal).

Why a dict of ours and not spandrel's ``ArchRegistry``/``ArchSupport``: spandrel's registry picks
an architecture by running each one's ``detect(state_dict)`` key heuristics in order, and hands
the state dict alone to ``Architecture.load``, which returns a ``ModelDescriptor``. None of that
fits these two:

* The catalogue already names each model's architecture, so nothing needs detecting, and a
  detect function is a way to be wrong: a NightNAFNet state dict has NAFNet's key names
  (``intro``, ``encoders``, ``downs``, ``ups``, ``decoders``, ``ending``) except ``middle`` for
  ``middle_blks`` and the ``gain`` head, so ours and spandrel's NAFNet would be told apart by a
  key or two and by the order of detection.
  Adding ours to spandrel's global ``MAIN_REGISTRY`` would also change what ``darkroom models
  add`` detects in operators' files.
* Loading needs more than the state dict: a night checkpoint's hyper-parameters live in its
  safetensors metadata, which spandrel's loader drops; a MIRNet file wraps its weights beside
  optimiser state.
* A descriptor's call takes one tensor and clamps it; the night network also takes the
  per-photo exposure (``forward(x, log_gain)``) and returns unclamped values.

What the registry holds is what the restorer needs beyond a module: the loader and whether the
network takes a whole-photo exposure. Size requirements come from the loaded network itself
(``size_requirements``, a ``spandrel.SizeRequirements`` like spandrel's models have), widened
for tiling by :func:`tile_requirements`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from restoration.architectures.iat import IAT, load_iat
from restoration.architectures.mirnet import MIRNet, load_mirnet
from restoration.architectures.nafnet_night import NightNAFNet, load_night
from restoration.architectures.nafnet_night_v2 import NightNAFNetV2, load_night_v2
from restoration.architectures.sci import SCI, load_sci
from restoration.architectures.zero_dce import (
    ZeroDCE,
    ZeroDCEPlusPlus,
    load_zero_dce,
    load_zero_dce_pp,
)
from restoration.padding import SizeRequirements

__all__ = ["ARCHITECTURES", "OwnArchitecture", "OwnNetwork", "tile_requirements"]

OwnNetwork = MIRNet | NightNAFNet | NightNAFNetV2 | ZeroDCE | ZeroDCEPlusPlus | SCI | IAT
"""A network of one of Darkroom's own architectures."""

WholePhoto = Literal["global-gain", "local-exposure", "photo-inputs"] | None

TILE_MULTIPLE = 8
"""Tiles of Darkroom's own networks are padded to multiples of 8 at least by default, as the
reference MIRNet's inference crops to (the network itself needs 4); the shipped night network
needs 16."""


@dataclass(frozen=True)
class OwnArchitecture:
    """How the restorer loads and runs one of Darkroom's own architectures."""

    name: str
    """The catalogue's name for it (``ModelEntry.architecture``)."""
    load: Callable[..., OwnNetwork]
    """Checkpoint file (and the entry's ``arch_options`` as keywords) -> the network, in eval
    mode on the CPU; ``ValueError`` for a file that is not one of its checkpoints."""
    whole_photo: WholePhoto = None
    """The pass over the whole photo the network needs before its tiles: ``"global-gain"``,
    one exposure every tile takes (``gain_stats`` / ``log_gain_from_stats`` /
    ``forward(x, log_gain)``, the night model v1); ``"local-exposure"``, the photo exposed
    region by region, which the tiles are then cut from (``expose``, the night model v2);
    ``"photo-inputs"``, whatever the network's own ``photo_inputs(image)`` returns: what the
    tiles are cut from and what every tile takes besides (Zero-DCE++'s curve map stacked on the
    photo, IAT's gamma and colour matrix)."""
    tile_multiple: int = 8
    """Tiles are padded to multiples of this too (:func:`tile_requirements`): 8 as the reference
    MIRNet's inference crops to; 1 for the published lightweight models, whose authors' code
    runs any size unpadded, so a photo that fits one tile gives exactly their output."""


def tile_requirements(model: OwnNetwork, multiple: int = TILE_MULTIPLE) -> SizeRequirements:
    """What the tiles of ``model`` are padded to: its own requirements, with sides a multiple
    of ``multiple`` too (the architecture's ``tile_multiple``)."""
    own = model.size_requirements
    return SizeRequirements(
        minimum=own.minimum,
        multiple_of=math.lcm(own.multiple_of, multiple),
        square=own.square,
    )


ARCHITECTURES: dict[str, OwnArchitecture] = {
    arch.name: arch
    for arch in (
        OwnArchitecture("mirnet", load_mirnet),
        OwnArchitecture("nafnet-night", load_night, whole_photo="global-gain"),
        OwnArchitecture("nafnet-night-v2", load_night_v2, whole_photo="local-exposure"),
        OwnArchitecture("zero-dce", load_zero_dce, tile_multiple=1),
        OwnArchitecture(
            "zero-dce-pp", load_zero_dce_pp, whole_photo="photo-inputs", tile_multiple=1
        ),
        OwnArchitecture("sci", load_sci, tile_multiple=1),
        OwnArchitecture("iat", load_iat, whole_photo="photo-inputs", tile_multiple=1),
    )
}
