"""The one padding rule (``restoration.padding.pad_to``) at any size, for every architecture's size
requirements: the smallest size that meets them, the input untouched in the top-left corner,
reflection where the side allows it and replication where it does not, finite values."""

from __future__ import annotations

import pytest
import spandrel
import torch

from restoration.architectures import TILE_MULTIPLE, tile_requirements
from restoration.architectures.mirnet import MIRNet
from restoration.architectures.nafnet_night import NightNAFNet
from restoration.padding import SizeRequirements, pad_to, padded_size
from tests.restoration.architectures.arch_cases import (
    MAX_ASPECT,
    SPANDREL_BUILDERS,
    TINY_SIZES,
    requirements,
)

ARCHITECTURES = ["mirnet", "nafnet-night", "nafnet-night-v2", *SPANDREL_BUILDERS]
EXTRA = {
    # Spandrel's Uformer: the strictest kind there is (square, multiple of 128).
    "square-128": SizeRequirements(multiple_of=128, square=True),
    "minimum-50-multiple-16": SizeRequirements(minimum=50, multiple_of=16),
    "none": SizeRequirements(),
}

SIDES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 39, 40, 41, 47, 48, 49, 63, 64, 65, 129]
"""Around every multiple and minimum above (4, 8, 16, 32, 40, 48, 64, 128)."""


def _sizes() -> list[tuple[int, int]]:
    sizes = set(TINY_SIZES) | {(1, MAX_ASPECT), (MAX_ASPECT, 1), (37, 53), (389, 517)}
    for side in SIDES:
        sizes.add((side, side))
    for tall, wide in zip(SIDES, reversed(SIDES), strict=True):
        if max(tall, wide) <= MAX_ASPECT * min(tall, wide):
            sizes.add((tall, wide))
    return sorted(sizes)


def _source_rows(side: int, target: int) -> torch.Tensor:
    """Which input row each output row comes from, by the rule stated in ``pad_to``: reflect
    (``side - 2``, ``side - 3``, ...) when the padding is shorter than the side, else repeat
    the last row."""
    pad = target - side
    extra = [side - 2 - i for i in range(pad)] if pad < side else [side - 1] * pad
    return torch.tensor([*range(side), *extra])


def _requirements(name: str) -> SizeRequirements:
    return EXTRA[name] if name in EXTRA else requirements(name)


@pytest.mark.parametrize(("height", "width"), _sizes())
@pytest.mark.parametrize("name", [*ARCHITECTURES, *EXTRA])
def test_pad_to_meets_the_requirements_at_any_size(name: str, height: int, width: int) -> None:
    size = _requirements(name)
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height))
    padded = pad_to(image, size)
    target_h, target_w = padded.shape[-2:]
    assert (target_h, target_w) == padded_size(height, width, size)
    assert size.check(target_w, target_h)
    # The smallest such size: one row or column less would not do.
    assert target_h == height or not size.check(target_w, target_h - 1)
    assert target_w == width or not size.check(target_w - 1, target_h)
    assert padded.dtype == image.dtype and bool(torch.isfinite(padded).all())
    assert torch.equal(padded[..., :height, :width], image)
    rows, columns = _source_rows(height, target_h), _source_rows(width, target_w)
    assert torch.equal(padded, image[:, :, rows][:, :, :, columns])


def test_padding_needs_nothing_when_the_size_already_fits() -> None:
    image = torch.rand(1, 3, 32, 48)
    assert pad_to(image, SizeRequirements(multiple_of=16)) is image


def test_a_side_shorter_than_its_padding_is_replicated_not_refused() -> None:
    """The shape of NPE_89's last exposure piece: 8 rows of a photo 774 wide, for a network
    that needs multiples of 16; reflection would need 8 < 8."""
    piece = torch.rand(1, 3, 8, 774)
    padded = pad_to(piece, SizeRequirements(multiple_of=16))
    assert padded.shape == (1, 3, 16, 784)
    assert torch.equal(padded[:, :, 8:, :774], piece[:, :, 7:8].expand(1, 3, 8, 774))
    reflected = piece[:, :, :, 763:773].flip(-1)  # columns 772, 771, ..., 763
    assert torch.equal(padded[:, :, :8, 774:], reflected)


@pytest.mark.parametrize(
    ("minimum", "multiple_of", "square"),
    [(0, 1, False), (48, 1, False), (50, 16, False), (0, 128, True), (7, 4, True), (0, 8, False)],
)
def test_the_padding_rule_is_spandrels(minimum: int, multiple_of: int, square: bool) -> None:
    ours = SizeRequirements(minimum=minimum, multiple_of=multiple_of, square=square)
    theirs = spandrel.SizeRequirements(minimum=minimum, multiple_of=multiple_of, square=square)
    assert ours.minimum == theirs.minimum
    for width in SIDES:
        for height in SIDES:
            assert ours.get_padding(width, height) == theirs.get_padding(width, height)
            assert ours.check(width, height) == theirs.check(width, height)


def test_impossible_requirements_are_refused() -> None:
    with pytest.raises(ValueError):
        SizeRequirements(multiple_of=0)
    with pytest.raises(ValueError):
        SizeRequirements(minimum=-1)


def test_own_networks_describe_themselves_like_spandrels() -> None:
    mirnet, night = MIRNet(num_features=8, number_msrb=0, number_rrg=1), NightNAFNet()
    for network in (mirnet, night):
        assert isinstance(network.size_requirements, SizeRequirements)
    assert mirnet.size_requirements.multiple_of == mirnet.size_multiple == 4
    assert night.size_requirements.multiple_of == night.size_multiple == 8
    # Tiles of both are padded to multiples of 8 at least, as the restorer always did.
    assert tile_requirements(mirnet) == SizeRequirements(multiple_of=TILE_MULTIPLE)
    assert tile_requirements(NightNAFNet(enc_blocks=[1] * 4, dec_blocks=[1] * 4)) == (
        SizeRequirements(multiple_of=16)
    )


def test_spandrel_models_keep_spandrels_own_requirements() -> None:
    assert requirements("IPT") == SizeRequirements(minimum=48)
    assert requirements("FFTformer") == SizeRequirements(multiple_of=32)
    assert requirements("SCUNet") == SizeRequirements(minimum=40)
