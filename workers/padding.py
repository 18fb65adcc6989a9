"""The one padding rule: a model's input padded to its spandrel ``SizeRequirements``.

Every model Darkroom runs states what it needs of its input's height and width as a
``spandrel.SizeRequirements`` (minimum side, multiple of, square): spandrel's descriptors carry
one, and Darkroom's own networks (``workers.archs``) describe themselves with the same type
(``size_requirements``). :func:`pad_to` is the only function that pads an input to them: the
tiles of ``workers.tiling``, the whole photo of a one-tile run, IPT's patch runner in
``workers.spandrel_models`` and the night network's own encoder all go through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spandrel import SizeRequirements

__all__ = ["SizeRequirements", "pad_to", "padded_size"]


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
