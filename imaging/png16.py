"""16-bit RGB(A) PNG writing: Pillow has no 16-bit colour mode, so its PNG writer cannot."""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["png16"]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png16(planes: np.ndarray, icc: bytes | None, exif: bytes | None) -> bytes:
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
