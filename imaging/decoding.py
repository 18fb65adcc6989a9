"""Decode stage: untrusted upload bytes -> a :class:`DecodedImage`, every failure ``InvalidImage``.

Untrusted input is the norm here, so :func:`decode` turns every way an upload can be broken into
``InvalidImage`` (which fails only that job) and checks the pixel budget from the header before
any pixel data is decompressed.

Known limits:

* Pillow decodes 16-bit-per-channel *colour* PNG/TIFF (48/64-bit) to 8-bit RGB, so such inputs
  reach the model with 8-bit precision; ``bit_depth`` still says 16 so a PNG output is 16-bit.
  16-bit grayscale (``I;16``) keeps its full precision.
* Animated inputs (GIF, APNG, animated WebP, MPO) are reduced to their first frame.
"""

from __future__ import annotations

import io
import logging
import re
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from imaging.image_types import TIFF_EXIF_KEEP, DecodedImage, describe
from shared.errors import InvalidImage

__all__ = ["decode"]

log = logging.getLogger(__name__)

_ORIENTATION = ExifTags.Base.Orientation

# Modes whose samples are wider than 8 bits; decoded at full precision.
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def decode(data: bytes, *, max_pixels: int, max_aspect_ratio: float | None = None) -> DecodedImage:
    """Decode untrusted bytes into float RGB; any broken or oversized input -> ``InvalidImage``.

    The size is checked against ``max_pixels`` from the header, before pixel data is read, so a
    tiny file that declares a huge canvas costs nothing. So is the aspect ratio, when
    ``max_aspect_ratio`` is given: a 1 x 1,000,000 strip has few pixels but becomes thousands of
    mostly-padding model tiles (1 x 20,000 already takes seconds on a CPU), so it is refused
    rather than allowed to hold a GPU. Animated images give their first frame.
    """
    if not data:
        raise InvalidImage("empty file")
    image = _open(data, max_pixels)
    with image:
        _check_size(image, max_pixels, max_aspect_ratio)
        fmt = image.format or "UNKNOWN"
        mode = image.mode
        try:
            # Image.open is lazy: load() is where truncated or corrupt pixel data shows up.
            # ImageFile.LOAD_TRUNCATED_IMAGES stays False so a cut-off JPEG is an error here.
            image.load()
        except MemoryError:
            raise
        except Exception as exc:
            raise InvalidImage(f"corrupt or truncated {fmt} image: {describe(exc)}") from None

        bit_depth = _declared_bit_depth(image, data)
        icc_profile = image.info.get("icc_profile") or None
        upright = _upright(image)
        exif = _exif_without_orientation(image)

    try:
        pixels, alpha, icc_profile = _to_float_rgb(upright, icc_profile)
    except MemoryError:
        raise
    except Exception as exc:
        raise InvalidImage(f"unsupported {fmt} image (mode {mode}): {describe(exc)}") from None
    return DecodedImage(
        pixels=pixels,
        alpha=alpha,
        format=fmt,
        mode=mode,
        bit_depth=bit_depth,
        icc_profile=icc_profile,
        exif=exif,
    )


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """``Image.open`` (header only, no pixel data yet), every failure ``InvalidImage``."""
    try:
        with warnings.catch_warnings():
            # We enforce our own ``max_pixels`` below; Pillow's warning threshold (~89 Mpx) must
            # not veto a size the settings allow. Its hard error (2x that) still raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InvalidImage(_too_many_pixels_message(str(exc), max_pixels)) from None
    except MemoryError:
        raise
    except UnidentifiedImageError:
        # Pillow's own message names the in-memory buffer's address: nothing a person can use.
        raise InvalidImage(
            "not a readable image: the bytes are in no image format Darkroom reads "
            "(JPEG, PNG, WebP, TIFF, BMP, GIF and the other formats Pillow opens)"
        ) from None
    except Exception as exc:  # SyntaxError, struct.error...: a known format, broken
        raise InvalidImage(f"not a readable image: {describe(exc)}") from None


def _check_size(image: Image.Image, max_pixels: int, max_aspect_ratio: float | None) -> None:
    """Refuse, from the header, a size that is invalid or over the pixel or aspect limits."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has an invalid size {width}x{height}")
    if width * height > max_pixels:
        raise InvalidImage(
            f"image is {width}x{height} ({width * height:,} pixels), over the limit of "
            f"{max_pixels:,} pixels"
        )
    ratio = max(width, height) / min(width, height)
    if max_aspect_ratio is not None and ratio > max_aspect_ratio:
        raise InvalidImage(
            f"image is {width}x{height}, an aspect ratio of {ratio:,.0f}:1, over the limit "
            f"of {max_aspect_ratio:g}:1"
        )


def _too_many_pixels_message(pillow_message: str, max_pixels: int) -> str:
    """Pillow refuses gross bombs inside ``Image.open``; keep its pixel count in our wording."""
    match = re.search(r"\((\d+) pixels\)", pillow_message)
    size = f"{int(match.group(1)):,} pixels" if match else "far too many pixels"
    return f"image has {size}, over the limit of {max_pixels:,} pixels"


def _declared_bit_depth(image: Image.Image, data: bytes) -> int:
    """16 when the input stores more than 8 bits a sample, even where Pillow reads only 8."""
    if image.mode in _HIGH_DEPTH_MODES:
        return 16
    if image.format == "PNG" and len(data) > 24 and data[12:16] == b"IHDR":
        return 16 if data[24] == 16 else 8  # IHDR bit depth; IHDR is always the first chunk
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258, 8)  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 16 if max((int(b) for b in bits), default=8) > 8 else 8
    return 8


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (all 8 values); broken EXIF leaves the image as stored."""
    try:
        upright = ImageOps.exif_transpose(image)
    except MemoryError:
        raise
    except Exception as exc:  # a malformed EXIF block should not cost the user the photo
        log.warning("ignoring unreadable EXIF orientation: %s", describe(exc))
        return image.copy()
    assert upright is not None  # not in_place
    return upright


def _exif_without_orientation(image: Image.Image) -> bytes | None:
    """The input's EXIF with Orientation removed: the pixels we return are already upright."""
    try:
        exif = image.getexif()
        if image.format == "TIFF":
            for ifd in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
                if ifd in exif:
                    exif.get_ifd(ifd)  # read the sub-IFD now, while the file is still open
            for tag in list(exif):
                if tag not in TIFF_EXIF_KEEP:
                    del exif[tag]
        elif _ORIENTATION in exif:
            del exif[_ORIENTATION]
        return exif.tobytes() if len(exif) else None
    except MemoryError:
        raise
    except Exception as exc:
        log.warning("dropping unreadable EXIF: %s", describe(exc))
        return None


def _icc_color_space(icc: bytes) -> bytes:
    """The data colour space signature from the ICC header (b"RGB ", b"GRAY", b"CMYK"...)."""
    return icc[16:20] if len(icc) >= 128 else b""


def _cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Colour-manage CMYK through its embedded profile when possible; else Pillow's naive maths."""
    if icc and _icc_color_space(icc) == b"CMYK":
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if converted is not None:
                return converted
        except MemoryError:
            raise
        except Exception as exc:  # no littlecms, or a profile it cannot use
            log.warning("CMYK profile unusable, converting without it: %s", describe(exc))
    return image.convert("RGB")


def _to_float_rgb(
    image: Image.Image, icc: bytes | None
) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """Any Pillow mode -> (H x W x 3 float32, H x W float32 alpha or None, usable ICC profile).

    The returned profile is kept only if it is an RGB profile: a gray or CMYK profile would
    mislabel the RGB pixels we produce (CMYK is converted through it to sRGB instead).
    """
    mode = image.mode
    alpha: np.ndarray | None = None
    if mode in _HIGH_DEPTH_MODES:
        gray = _high_depth_gray(image)
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
        return rgb, None, _rgb_profile_only(icc)
    if mode == "CMYK":
        rgb_image = _cmyk_to_rgb(image, icc)
        return _u8_to_float(np.asarray(rgb_image)), None, None
    if mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info or _palette_mode(image) == "RGBA"
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")  # RGBX, YCbCr, HSV...; raises for modes with no RGB route

    array = np.asarray(image)
    if image.mode in ("L", "LA"):
        gray = array if image.mode == "L" else array[:, :, 0]
        rgb = np.repeat(gray[:, :, None], 3, axis=2)
        if image.mode == "LA":
            alpha = _u8_to_float(array[:, :, 1])
    else:
        rgb = array[:, :, :3]
        if image.mode == "RGBA":
            alpha = _u8_to_float(array[:, :, 3])
    return _u8_to_float(rgb), alpha, _rgb_profile_only(icc)


def _palette_mode(image: Image.Image) -> str | None:
    palette = image.palette
    return palette.mode if palette is not None else None


def _rgb_profile_only(icc: bytes | None) -> bytes | None:
    if icc and _icc_color_space(icc) == b"RGB ":
        return icc
    # A gray profile's curve is close to sRGB's, so gray values are kept as they are, unlabelled.
    return None


def _u8_to_float(array: np.ndarray) -> np.ndarray:
    out = array.astype(np.float32)
    out *= 1.0 / 255.0
    return np.ascontiguousarray(out)


def _high_depth_gray(image: Image.Image) -> np.ndarray:
    """16-bit, 32-bit int and float gray -> float32 in [0, 1], without dropping to 8 bits.

    ``I;16*`` and ``I`` are read as 16-bit samples (``I`` is how Pillow stores 16-bit data from
    several formats); ``F`` is taken as already normalised when it fits in [0, 1], otherwise as
    8-bit or 16-bit scaled values, or finally scaled by its maximum.
    """
    values = np.asarray(image).astype(np.float32)
    if image.mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(values.max()) if values.size else 0.0
        scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0
        if peak > 65535.0:
            scale = peak
    else:
        scale = 65535.0
    values *= 1.0 / scale
    np.clip(values, 0.0, 1.0, out=values)
    return values
