"""The one padding rule: a model's input padded to its ``SizeRequirements``.

Every model Darkroom runs states what it needs of its input's height and width (minimum side,
multiple of, square): spandrel's descriptors carry a ``spandrel.SizeRequirements``, which
``restoration.spandrel_models`` turns into this module's :class:`SizeRequirements`, and Darkroom's
own networks (``restoration.architectures``) describe themselves with it (``size_requirements``).
:func:`pad_to` is the only function that pads an input to them: the tiles of
``restoration.tiling``, the whole photo of a one-tile run, IPT's patch runner in
``restoration.spandrel_models`` and the night network's own encoder all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["SizeRequirements", "pad_to", "padded_size"]


@dataclass(frozen=True)
class SizeRequirements:
    """What a model needs of its input's sides: at least ``minimum`` pixels, a multiple of
    ``multiple_of``, and equal if ``square``.

    The fields and the rule are spandrel's (``tests/restoration/test_padding.py`` checks that the
    padding agrees with ``spandrel.SizeRequirements`` on every size). Darkroom has its own
    because ``import spandrel`` imports every architecture spandrel knows, and torchvision and
    dynamo with them: 5 s of every ``darkroom submit`` on the 2-core CPU, for a type. Only
    models loaded through spandrel import it now.
    """

    minimum: int = 0
    multiple_of: int = 1
    square: bool = False

    def __post_init__(self) -> None:
        if self.minimum < 0 or self.multiple_of < 1:
            raise ValueError(f"impossible size requirements: {self}")
        # As spandrel: the minimum is itself a multiple of ``multiple_of``.
        object.__setattr__(self, "minimum", _round_up(self.minimum, self.multiple_of))

    def get_padding(self, width: int, height: int) -> tuple[int, int]:
        """The least ``(pad_width, pad_height)`` that meets the requirements (spandrel's
        order: width first)."""
        w = _round_up(max(self.minimum, width), self.multiple_of)
        h = _round_up(max(self.minimum, height), self.multiple_of)
        if self.square:
            w = h = max(w, h)
        return w - width, h - height

    def check(self, width: int, height: int) -> bool:
        """Whether a ``width`` x ``height`` input meets the requirements as it is."""
        return self.get_padding(width, height) == (0, 0)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def padded_size(height: int, width: int, size: SizeRequirements) -> tuple[int, int]:
    """The smallest ``(height, width)`` at least as large as the input that satisfies ``size``
    (spandrel's ``get_padding``, which takes and returns width first, added back)."""
    pad_w, pad_h = size.get_padding(width, height)
    return height + pad_h, width + pad_w


def pad_to(tensor: torch.Tensor, size: SizeRequirements) -> torch.Tensor:
    """``tensor`` (``N x C x h x w``) padded at the bottom and right to satisfy ``size``.

    Each axis is padded by reflection when the padding is shorter than that side, and by
    replicating the last row or column otherwise. Why:

    * Reflection keeps the edge statistics natural (no flat band, no step), so the pixels the
      model returns next to the edge, which are kept, are least disturbed by what was added.
    * ``torch``'s reflect mode needs the padding smaller than the side, and a side of one pixel
      cannot be reflected at all. That happens whenever the side is shorter than its padding:
      a strip photo (1 x N), a tiny one (2 x 3), a whole photo smaller than a model's minimum
      (IPT's 48 px), a square model's short side, or the thin last piece of the night model's
      whole-photo exposure pass (8 rows of a 1032-row photo, padded to 16: the bug this
      function fixed). Replicating the edge is defined for every side of at least one pixel.
    * Replicate rather than reflecting repeatedly or reflecting ``side - 1`` and replicating
      the rest (spandrel's own call does the latter): a side that short holds no texture a
      mirror could keep, the padded part is cropped from the output, and replicate is what
      Darkroom's tiles were always padded with, so no photo that restored before changes.
      Spandrel's call never pads a tile of ours: tiles reach it already satisfying its model's
      requirements.
    """
    height, width = tensor.shape[-2:]
    pad_w, pad_h = size.get_padding(width, height)
    tensor = _pad_axis(tensor, 3, pad_w)
    return _pad_axis(tensor, 2, pad_h)


def _pad_axis(tensor: torch.Tensor, dim: int, amount: int) -> torch.Tensor:
    """Pad one spatial axis at its end, by :func:`pad_to`'s rule."""
    if amount <= 0:
        return tensor
    pad = (0, amount, 0, 0) if dim == 3 else (0, 0, 0, amount)
    mode = "reflect" if amount < tensor.shape[dim] else "replicate"
    return F.pad(tensor, pad, mode=mode)
