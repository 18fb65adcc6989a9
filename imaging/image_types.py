"""What the decode and encode stages hand each other: :class:`DecodedImage`, :class:`EncodedImage`.

The model stage only ever sees ``H x W x 3`` float32 RGB in ``[0, 1]``, the right way up.
Everything else the output should keep from the input (alpha, ICC profile, EXIF, 8 vs 16 bits,
container format) travels beside the pixels in a :class:`DecodedImage` and is put back by
``imaging.encoding.encode``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ExifTags

__all__ = ["TIFF_EXIF_KEEP", "DecodedImage", "EncodedImage", "describe"]

# TIFF IFD0 is the image's own layout (strip offsets, sizes, compression...), not metadata: only
# these descriptive tags (and the EXIF/GPS sub-IFDs) are worth carrying to another file.
TIFF_EXIF_KEEP = frozenset(
    {
        ExifTags.Base.ImageDescription,
        ExifTags.Base.Make,
        ExifTags.Base.Model,
        ExifTags.Base.Software,
        ExifTags.Base.DateTime,
        ExifTags.Base.Artist,
        ExifTags.Base.HostComputer,
        ExifTags.Base.Copyright,
        ExifTags.IFD.Exif,
        ExifTags.IFD.GPSInfo,
    }
)


@dataclass
class DecodedImage:
    """A decoded input: model-ready pixels plus what the output should keep from the input."""

    pixels: np.ndarray  # H x W x 3 float32 RGB in [0, 1], EXIF orientation already applied
    alpha: np.ndarray | None  # H x W float32 in [0, 1] when the input had transparency
    format: str  # Pillow format name of the input: "JPEG", "PNG", "WEBP", "TIFF", ...
    mode: str  # the input's Pillow mode ("RGB", "L", "RGBA", "I;16", "CMYK", ...)
    bit_depth: int  # 8 or 16
    icc_profile: bytes | None  # only an RGB profile: it must describe the RGB pixels we write
    exif: bytes | None  # the input's EXIF with Orientation removed (viewers must not rotate again)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class EncodedImage:
    """An encoded output, with what the upload needs to name and label it."""

    data: bytes
    format: str  # "JPEG", "PNG", "WEBP" or "TIFF"
    extension: str  # ".jpg", ".png", ".webp" or ".tiff"
    content_type: str  # "image/jpeg", ...


def describe(exc: BaseException) -> str:
    """An exception as ``Type: message``, for messages users see."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
