"""The chroma clean-up: colour blotches in lifted shadows flatten, luma and unlifted pixels stay
as they were, colour edges that follow luma edges stay sharp, and any size works."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restoration.chroma_cleanup import SHIPPED, colour_difference, from_colour_difference

LIFTED = 3.0
"""A log-gain of 3: a shadow lifted about 20 times."""


def _luma(image: torch.Tensor) -> torch.Tensor:
    return colour_difference(image)[0]


def _blotchy_grey(size: int = 96, seed: int = 0) -> torch.Tensor:
    """Mid grey with chroma noise in blotches ~4 px wide and no luma change."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 2, size // 4, size // 4, generator=generator) * 0.04
    colour = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return from_colour_difference(torch.full((1, 1, size, size), 0.4), colour)


def _colour_spread(image: torch.Tensor) -> float:
    return float(colour_difference(image)[1].std())


def test_blotches_in_a_lifted_shadow_flatten_and_luma_is_kept() -> None:
    image = _blotchy_grey()
    cleaned = SHIPPED(image, torch.full((1, 1, 96, 96), LIFTED))
    assert _colour_spread(cleaned) < _colour_spread(image) / 2
    torch.testing.assert_close(_luma(cleaned), _luma(image), atol=1e-5, rtol=0)


def test_pixels_the_exposure_left_alone_are_unchanged() -> None:
    image = _blotchy_grey()
    torch.testing.assert_close(SHIPPED(image, torch.zeros(1, 1, 96, 96)), image, atol=1e-5, rtol=0)


def test_a_colour_edge_that_follows_a_luma_edge_stays_sharp() -> None:
    """A dark blue wall beside a brighter orange one: the colour must not bleed across."""
    image = torch.empty(1, 3, 64, 64)
    image[..., :32] = torch.tensor([0.10, 0.12, 0.30]).view(1, 3, 1, 1)
    image[..., 32:] = torch.tensor([0.60, 0.40, 0.15]).view(1, 3, 1, 1)
    cleaned = SHIPPED(image, torch.full((1, 1, 64, 64), LIFTED))
    for column in (29, 34):  # 3 px either side of the edge
        torch.testing.assert_close(cleaned[..., column], image[..., column], atol=0.02, rtol=0)


@pytest.mark.parametrize("size", [(1, 1), (1, 97), (97, 1), (2, 3), (7, 300), (17, 33), (64, 65)])
def test_every_size_keeps_its_shape_and_stays_finite(size: tuple[int, int]) -> None:
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    cleaned = SHIPPED(image, torch.full((1, 1, *size), LIFTED))
    assert cleaned.shape == image.shape
    assert torch.isfinite(cleaned).all()
