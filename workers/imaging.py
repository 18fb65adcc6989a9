"""Decode and encode stages of a restoration job: bytes <-> float RGB arrays (Pillow + numpy).

The model stage only ever sees ``H x W x 3`` float32 RGB in ``[0, 1]``, the right way up. Everything
else the output should keep from the input (alpha, ICC profile, EXIF, 8 vs 16 bits, container
format) travels beside the pixels in a :class:`DecodedImage` and is put back by :func:`encode`.

Untrusted input is the norm here, so :func:`decode` turns every way an upload can be broken into
``InvalidImage`` (which fails only that job) and checks the pixel budget from the header before
any pixel data is decompressed.

Known limits:

* 16-bit output is written for PNG only (by a small PNG writer below, since Pillow has no 16-bit
  RGB mode). TIFF output is always 8-bit, and uncompressed (see ``_save_with_pillow``).
* Pillow decodes 16-bit-per-channel *colour* PNG/TIFF (48/64-bit) to 8-bit RGB, so such inputs
  reach the model with 8-bit precision; ``bit_depth`` still says 16 so a PNG output is 16-bit.
  16-bit grayscale (``I;16``) keeps its full precision.
* Animated inputs (GIF, APNG, animated WebP, MPO) are reduced to their first frame.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, replace

import numpy as np
from PIL import ExifTags, Image, ImageOps

from shared.errors import InvalidImage, InvalidRequest

log = logging.getLogger(__name__)

_ORIENTATION = ExifTags.Base.Orientation

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

# Modes whose samples are wider than 8 bits; decoded at full precision.
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
# TIFF IFD0 is the image's own layout (strip offsets, sizes, compression...), not metadata: only
# these descriptive tags (and the EXIF/GPS sub-IFDs) are worth carrying to another file.
_TIFF_EXIF_KEEP = frozenset(
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


# --------------------------------------------------------------------------------------- decode


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
    try:
        with warnings.catch_warnings():
            # We enforce our own ``max_pixels`` below; Pillow's warning threshold (~89 Mpx) must
            # not veto a size the settings allow. Its hard error (2x that) still raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InvalidImage(_too_many_pixels_message(str(exc), max_pixels)) from None
    except MemoryError:
        raise
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error...: bad input
        raise InvalidImage(f"not a readable image: {_describe(exc)}") from None

    with image:
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
        fmt = image.format or "UNKNOWN"
        mode = image.mode
        try:
            # Image.open is lazy: load() is where truncated or corrupt pixel data shows up.
            # ImageFile.LOAD_TRUNCATED_IMAGES stays False so a cut-off JPEG is an error here.
            image.load()
        except MemoryError:
            raise
        except Exception as exc:
            raise InvalidImage(f"corrupt or truncated {fmt} image: {_describe(exc)}") from None

        bit_depth = _declared_bit_depth(image, data)
        icc_profile = image.info.get("icc_profile") or None
        upright = _upright(image)
        exif = _exif_without_orientation(image)

    try:
        pixels, alpha, icc_profile = _to_float_rgb(upright, icc_profile)
    except MemoryError:
        raise
    except Exception as exc:
        raise InvalidImage(f"unsupported {fmt} image (mode {mode}): {_describe(exc)}") from None
    return DecodedImage(
        pixels=pixels,
        alpha=alpha,
        format=fmt,
        mode=mode,
        bit_depth=bit_depth,
        icc_profile=icc_profile,
        exif=exif,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        log.warning("ignoring unreadable EXIF orientation: %s", _describe(exc))
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
                if tag not in _TIFF_EXIF_KEEP:
                    del exif[tag]
        elif _ORIENTATION in exif:
            del exif[_ORIENTATION]
        return exif.tobytes() if len(exif) else None
    except MemoryError:
        raise
    except Exception as exc:
        log.warning("dropping unreadable EXIF: %s", _describe(exc))
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
            log.warning("CMYK profile unusable, converting without it: %s", _describe(exc))
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


# --------------------------------------------------------------------------------------- encode


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
        data = _png16(_quantise(planes, 65535, np.uint16), decoded.icc_profile, decoded.exif)
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
        raise InvalidImage(f"could not encode the result as {target}: {_describe(exc)}") from None
    return buffer.getvalue()


def _without_tiff_layout_tags(exif: bytes) -> bytes:
    """Pillow's TIFF writer merges EXIF IFD0 into the file's own IFD: keep layout tags out."""
    parsed = Image.Exif()
    parsed.load(exif)
    for tag in list(parsed):
        if tag not in _TIFF_EXIF_KEEP:
            del parsed[tag]
    return parsed.tobytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png16(planes: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
    """A 16-bit RGB(A) PNG: Pillow has no 16-bit colour mode, so its PNG writer cannot do this.

    Every row uses the "Up" filter (difference from the row above), which is one vectorised
    subtraction and compresses photos much better than no filter.
    """
    height, width, channels = planes.shape
    color_type = 2 if channels == 3 else 6  # truecolour / truecolour with alpha
    rows = planes.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type Up
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 wraps mod 256, as PNG wants

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    chunks = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header)]
    if icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    compressed = zlib.compress(filtered.tobytes(), 6)
    step = 1 << 20
    for start in range(0, len(compressed), step):
        chunks.append(_png_chunk(b"IDAT", compressed[start : start + step]))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)
