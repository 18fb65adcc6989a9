"""Images built with Pillow (or by hand) and readers for what the decode/encode tests check;
nothing is read from disk."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import ExifTags, Image, ImageCms

MAX = 10_000_000
ORIENTATION = ExifTags.Base.Orientation
MAKE = ExifTags.Base.Make
EXIF_IFD = ExifTags.IFD.Exif
DATE_TIME_ORIGINAL = ExifTags.Base.DateTimeOriginal
RED = (255, 0, 0)


def pattern(height: int = 24, width: int = 40) -> np.ndarray:
    """A smooth, non-symmetric RGB pattern (lossy codecs keep it close; no two corners alike)."""
    y, x = np.mgrid[0:height, 0:width]
    r = 30 + 150 * x / max(width - 1, 1)
    g = 30 + 150 * y / max(height - 1, 1)
    b = np.full_like(r, 90.0)
    return np.stack([r, g, b], axis=2).round().astype(np.uint8)


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def camera_exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "Darkroom Camera"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = "2021:02:03 04:05:06"
    return exif


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def read_png16(data: bytes) -> tuple[int, int, np.ndarray]:
    """Independent reader for the 16-bit PNGs we write (filters None/Up only): Pillow reads 8."""
    chunks = png_chunks(data)
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + width * channels * depth // 8)
    out = np.zeros((height, rows.shape[1] - 1), np.uint8)
    for i, row in enumerate(rows):
        assert row[0] in (0, 2), "unexpected PNG filter"
        out[i] = row[1:] + (out[i - 1] if row[0] == 2 and i else 0)
    samples = out.view(">u2").reshape(height, width, channels)
    return depth, color_type, samples


def png16_rgb(samples: np.ndarray) -> bytes:
    """A 48-bit RGB PNG made by hand (Pillow cannot write one), filter None."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    height, width, _ = samples.shape
    rows = samples.astype(">u2").view(np.uint8).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def with_declared_size(png: bytes, width: int, height: int) -> bytes:
    """Patch a PNG's IHDR to claim another size (and fix its CRC): a decompression-bomb header."""
    assert png[12:16] == b"IHDR"
    body = struct.pack(">II", width, height) + png[24:29]
    return png[:16] + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) + png[33:]
