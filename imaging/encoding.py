"""Encode stage: restored pixels plus the input's metadata -> an :class:`EncodedImage`.

The output keeps what the input had (alpha, ICC profile, EXIF, gray vs colour, 8 vs 16 bits,
container format; see :func:`encode`). Known limits: 16-bit output is written for PNG only (by
``imaging.png16``, since Pillow has no 16-bit RGB mode); TIFF output is always 8-bit, and
uncompressed (see ``_save_with_pillow``).
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace

import numpy as np
from PIL import Image

from imaging.image_types import TIFF_EXIF_KEEP, DecodedImage, EncodedImage, describe
from imaging.png16 import png16
from shared.errors import InvalidImage, InvalidRequest

__all__ = ["encode", "output_format"]

log = logging.getLogger(__name__)

# Formats we write, with what each one needs on the way out.
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tiff"}
_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}
_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
# Largest side each container can store; checked up front so an upscaled result fails clearly.
_MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383, "PNG": 2**31 - 1, "TIFF": 2**32 - 1}
# A JPEG APP1 segment holds at most 65533 bytes, EXIF header included.
_JPEG_MAX_EXIF = 65_533


def output_format(input_format: str, requested: str | None) -> str:
    """The format to write: the requested one, else the input's, else the nearest we can write.

    ``requested`` is matched case-insensitively ("jpeg"/"jpg", "png", "webp", "tiff"/"tif").
    Read-only formats map to what keeps the picture intact: MPO (multi-picture JPEG) -> JPEG,
    anything else (GIF, BMP, ICO, PPM...) -> PNG, which is lossless and keeps transparency.
    """
    if requested is not None:
        name = requested.strip().lstrip(".").upper()
        name = _ALIASES.get(name, name)
        if name not in _EXTENSIONS:
            raise InvalidRequest(
                f"unsupported output format {requested!r}; use one of jpeg, png, webp, tiff"
            )
        return name
    name = (input_format or "").upper()
    name = _ALIASES.get(name, name)
    if name in _EXTENSIONS:
        return name
    if name == "MPO":
        return "JPEG"
    return "PNG"


def encode(
    decoded: DecodedImage,
    pixels: np.ndarray,
    *,
    fmt: str | None = None,
    jpeg_quality: int = 95,
) -> EncodedImage:
    """Encode restored ``pixels`` (H x W x 3 float, any range) with the input's metadata.

    Values are clamped to [0, 1]. Alpha is put back for PNG/WebP/TIFF (resized if the model
    changed the size) and dropped for JPEG. ICC profile and EXIF go into every format. A 16-bit
    input gives a 16-bit PNG; every other output is 8-bit. ``jpeg_quality`` also drives WebP.
    """
    if not 1 <= jpeg_quality <= 100:
        raise InvalidRequest(f"quality must be between 1 and 100, got {jpeg_quality}")
    target = output_format(decoded.format, fmt)
    rgb = _clamped(pixels)
    height, width = rgb.shape[:2]
    limit = _MAX_SIDE[target]
    if width > limit or height > limit:
        raise InvalidImage(f"a {width}x{height} image is too large for {target} (max side {limit})")

    alpha = None
    if decoded.alpha is not None and target in _ALPHA_FORMATS:
        alpha = _alpha_for(decoded.alpha, width, height)

    if _stays_gray(decoded, alpha):
        # A grayscale photo comes back grayscale (same luma weights as Pillow's "L").
        gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        sixteen = decoded.bit_depth == 16 and target in ("PNG", "TIFF")
        image = Image.fromarray(
            _quantise(gray, 65535, np.uint16) if sixteen else _quantise(gray, 255, np.uint8)
        )
        # The kept profile is an RGB one (see decode): it would mislabel a gray file.
        data = _save_with_pillow(image, target, replace(decoded, icc_profile=None), jpeg_quality)
        return EncodedImage(data, target, _EXTENSIONS[target], _CONTENT_TYPES[target])
    planes = rgb if alpha is None else np.concatenate([rgb, alpha[:, :, None]], axis=2)
    if decoded.bit_depth == 16 and target == "PNG":
        data = png16(_quantise(planes, 65535, np.uint16), decoded.icc_profile, decoded.exif)
    else:
        image = Image.fromarray(_quantise(planes, 255, np.uint8))
        data = _save_with_pillow(image, target, decoded, jpeg_quality)
    return EncodedImage(
        data=data,
        format=target,
        extension=_EXTENSIONS[target],
        content_type=_CONTENT_TYPES[target],
    )


_GRAY_MODES = frozenset({"1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _stays_gray(decoded: DecodedImage, alpha: np.ndarray | None) -> bool:
    """Gray inputs without transparency keep one channel in the output."""
    return decoded.mode in _GRAY_MODES and alpha is None


def _clamped(pixels: np.ndarray) -> np.ndarray:
    array = np.asarray(pixels)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"pixels must be H x W x 3, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"pixels must be floating point in [0, 1], got {array.dtype}")
    # NaN (a diverged model) becomes black rather than an arbitrary integer after the cast.
    out = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _alpha_for(alpha: np.ndarray, width: int, height: int) -> np.ndarray:
    """The input's alpha at the output size (upscaling models change the size)."""
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.shape != (height, width):
        resized = Image.fromarray(np.ascontiguousarray(alpha)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        alpha = np.asarray(resized, dtype=np.float32)
    return np.clip(alpha, 0.0, 1.0)


def _quantise(planes: np.ndarray, top: int, dtype: type[np.generic]) -> np.ndarray:
    scaled = planes * np.float32(top)
    np.rint(scaled, out=scaled)
    return np.ascontiguousarray(scaled.astype(dtype))


def _save_with_pillow(
    image: Image.Image, target: str, decoded: DecodedImage, quality: int
) -> bytes:
    options: dict[str, object] = {}
    if decoded.icc_profile:
        options["icc_profile"] = decoded.icc_profile
    exif = decoded.exif
    if exif and target == "JPEG" and len(exif) > _JPEG_MAX_EXIF:
        log.warning("dropping %d bytes of EXIF: too long for a JPEG APP1 segment", len(exif))
        exif = None
    if exif:
        options["exif"] = exif
    if target == "JPEG":
        # Chroma subsampling visibly blurs restored detail; at high quality keep full chroma.
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
    elif target == "WEBP":
        options.update(quality=quality, method=4)
    elif target == "TIFF" and exif:
        options["exif"] = _without_tiff_layout_tags(exif)
    # TIFF gets no compression option on purpose: compression goes through libtiff, which cannot
    # write the EXIF sub-IFD (Pillow raises), and uncompressed TIFF is what every reader takes.

    buffer = io.BytesIO()
    try:
        image.save(buffer, target, **options)
    except MemoryError:
        raise
    except Exception as exc:
        raise InvalidImage(f"could not encode the result as {target}: {describe(exc)}") from None
    return buffer.getvalue()


def _without_tiff_layout_tags(exif: bytes) -> bytes:
    """Pillow's TIFF writer merges EXIF IFD0 into the file's own IFD: keep layout tags out."""
    parsed = Image.Exif()
    parsed.load(exif)
    for tag in list(parsed):
        if tag not in TIFF_EXIF_KEEP:
            del parsed[tag]
    return parsed.tobytes()
