"""Contact sheets: every method's result on every photo, laid side by side for a person to judge.

No-reference figures say where to look but not what a restoration looks like: a noise figure
cannot tell grain from blotches, nor a chroma ratio a warm lamp from a green cast. So an
evaluation without references also writes pictures, at bounded sizes however large the photos:

- one JPEG row per photo (``<set>/<photo>.jpg``): each method's panel, labelled with its figures;
- index pages (``index-01.jpg``, ...): every photo's row, smaller, a few photos a page;
- ``crops.jpg``: a 100 % crop of the darkest flat region of the photos where grain matters most,
  the region where amplified noise shows first.

Pillow only; nothing here knows what the figures mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imaging.no_reference import luma

PANEL_SIDE = 480
"""Long side of a panel in a photo's row, in pixels."""
INDEX_SIDE = 200
PHOTOS_PER_INDEX_PAGE = 8
CROP_SIDE = 256
CROP_PHOTOS = 4
JPEG_QUALITY = 88
_GAP = 6
_BACKGROUND = (24, 24, 24)
_TEXT = (235, 235, 235)
_CRUSHED = 2 / 255
"""Windows darker than this on average are crushed to black: no grain left to look at."""


@dataclass(frozen=True)
class Panel:
    """One method's picture of one photo, with the lines printed above it."""

    label: str
    pixels: np.ndarray
    """H x W x 3 floats in [0, 1]; every panel of a photo has the input's size."""
    caption: tuple[str, ...] = ()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def thumbnail(pixels: np.ndarray, long_side: int) -> Image.Image:
    """The picture with its long side at ``long_side`` at most (Lanczos), never enlarged."""
    image = to_image(pixels)
    image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    return image


def with_text(image: Image.Image, lines: Sequence[str], size: int = 14) -> Image.Image:
    """``image`` under a dark band holding ``lines``, so labels never cover the picture; as
    wide as the longest line where that is wider than the picture."""
    font = _font(size)
    line_height = size + 4
    band = _GAP + line_height * len(lines)
    text_width = max((int(font.getlength(line)) + 8 for line in lines), default=0)
    out = Image.new("RGB", (max(image.width, text_width), image.height + band), _BACKGROUND)
    draw = ImageDraw.Draw(out)
    for number, line in enumerate(lines):
        draw.text((4, _GAP // 2 + number * line_height), line, fill=_TEXT, font=font)
    out.paste(image, (0, band))
    return out


def side_by_side(images: list[Image.Image], title: str = "", size: int = 16) -> Image.Image:
    """``images`` in one row, tops aligned, with ``title`` in a band above the row."""
    width = sum(image.width for image in images) + _GAP * (len(images) + 1)
    height = max(image.height for image in images) + 2 * _GAP
    row = Image.new("RGB", (width, height), _BACKGROUND)
    left = _GAP
    for image in images:
        row.paste(image, (left, _GAP))
        left += image.width + _GAP
    return with_text(row, [title], size) if title else row


def stacked(images: list[Image.Image]) -> Image.Image:
    """``images`` one under the other, left aligned."""
    page = Image.new(
        "RGB", (max(image.width for image in images), sum(image.height for image in images))
    )
    top = 0
    for image in images:
        page.paste(image, (0, top))
        top += image.height
    return page


def darkest_flat_window(pixels: np.ndarray, side: int = CROP_SIDE) -> tuple[int, int, int]:
    """(top, left, side) of the ``side`` x ``side`` window of a photo, on a half-window grid,
    with the lowest mean plus spread of luma: dark, and flat so that edges and texture do not
    pass for noise. Windows crushed to black are skipped while any other is left."""
    y = luma(pixels)
    side = min(side, *y.shape)
    step = max(side // 2, 1)
    windows = [
        (float(block.mean()), float(block.std()), top, left)
        for top in range(0, y.shape[0] - side + 1, step)
        for left in range(0, y.shape[1] - side + 1, step)
        for block in (y[top : top + side, left : left + side],)
    ]
    lit = [w for w in windows if w[0] >= _CRUSHED] or windows
    _, _, top, left = min(lit, key=lambda w: (w[0] + w[1], w[2], w[3]))
    return top, left, side


@dataclass
class ContactSheet:
    """Writes a photo's row as soon as its panels are ready and keeps only small copies for
    the index pages and the crops, so a whole set of large photos never sits in memory."""

    folder: Path
    panel_side: int = PANEL_SIDE
    index_side: int = INDEX_SIDE
    per_page: int = PHOTOS_PER_INDEX_PAGE
    crop_side: int = CROP_SIDE
    crop_photos: int = CROP_PHOTOS
    _index: list[Image.Image] = field(default_factory=list)
    _crops: list[tuple[float, str, Image.Image]] = field(default_factory=list)

    def add(self, photo: str, size: str, panels: list[Panel], crop_priority: float) -> Path:
        """Write ``photo``'s row; the photos of highest ``crop_priority`` get a crop row."""
        title = f"{photo}  {size}"
        row = side_by_side(
            [
                with_text(thumbnail(p.pixels, self.panel_side), [p.label, *p.caption])
                for p in panels
            ],
            title,
        )
        path = self.folder / f"{photo}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        row.save(path, quality=JPEG_QUALITY)
        self._index.append(
            side_by_side(
                [with_text(thumbnail(p.pixels, self.index_side), [p.label], 12) for p in panels],
                title,
                14,
            )
        )
        self._keep_crop(photo, panels, crop_priority)
        return path

    def _keep_crop(self, photo: str, panels: list[Panel], priority: float) -> None:
        top, left, side = darkest_flat_window(panels[0].pixels, self.crop_side)
        crops = [
            with_text(to_image(p.pixels[top : top + side, left : left + side]), [p.label], 12)
            for p in panels
        ]
        title = f"{photo}  100 % crop at x={left} y={top}"
        self._crops.append((priority, photo, side_by_side(crops, title, 14)))
        self._crops.sort(key=lambda kept: (-kept[0], kept[1]))
        del self._crops[self.crop_photos :]

    @property
    def cropped(self) -> list[str]:
        """The photos given a crop row so far, highest priority first."""
        return [photo for _, photo, _ in self._crops]

    def finish(self) -> list[Path]:
        """Write the index pages and the crops sheet (replacing earlier runs' index pages)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("index-*.jpg"):
            stale.unlink()
        written = []
        for page, start in enumerate(range(0, len(self._index), self.per_page), start=1):
            path = self.folder / f"index-{page:02d}.jpg"
            stacked(self._index[start : start + self.per_page]).save(path, quality=JPEG_QUALITY)
            written.append(path)
        if self._crops:
            path = self.folder / "crops.jpg"
            stacked([image for _, _, image in self._crops]).save(path, quality=JPEG_QUALITY)
            written.append(path)
        return written
