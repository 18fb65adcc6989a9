"""16-bit PNG output (``imaging.png16``), read back by an independent reader (Pillow reads 8
bits of colour)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from imaging.decoding import decode
from imaging.encoding import encode
from imaging.png16 import png16
from tests.imaging.image_cases import (
    MAX,
    open_image,
    png16_rgb,
    png_chunks,
    read_png16,
    save,
    srgb_icc,
)


def test_the_writer_round_trips_every_sample_and_labels_the_file() -> None:
    planes = np.random.default_rng(5).integers(0, 65536, (7, 5, 4), dtype=np.uint16)
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"
    data = png16(planes, b"not really a profile", exif)

    depth, color_type, samples = read_png16(data)
    assert (depth, color_type) == (16, 6)
    np.testing.assert_array_equal(samples, planes)
    chunks = dict(png_chunks(data))
    assert chunks[b"eXIf"] == exif[6:]  # PNG stores EXIF without JPEG's "Exif" header
    assert chunks[b"iCCP"].startswith(b"ICC Profile\x00\x00")


def test_16_bit_colour_png_output_is_16_bit() -> None:
    icc = srgb_icc()
    decoded = decode(
        save(Image.new("RGB", (4, 2), (10, 200, 30)), "PNG", icc_profile=icc), max_pixels=MAX
    )
    decoded.bit_depth = 16  # Pillow reads 16-bit colour PNGs as 8-bit; the writer still must work
    depth, color_type, samples = read_png16(encode(decoded, decoded.pixels).data)
    assert (depth, color_type) == (16, 2)
    np.testing.assert_array_equal(samples[0, 0], [10 * 257, 200 * 257, 30 * 257])
    assert open_image(encode(decoded, decoded.pixels).data).info.get("icc_profile") == icc


def test_16_bit_rgba_png_output_keeps_alpha() -> None:
    decoded = decode(
        save(Image.fromarray(np.full((3, 5), 40000, np.uint16)), "PNG"), max_pixels=MAX
    )
    decoded.alpha = np.linspace(0, 1, 15, dtype=np.float32).reshape(3, 5)

    depth, color_type, samples = read_png16(encode(decoded, decoded.pixels).data)

    assert (depth, color_type) == (16, 6)
    np.testing.assert_array_equal(samples[:, :, 0], 40000)
    np.testing.assert_array_equal(samples[:, :, 3], np.rint(decoded.alpha * 65535))


def test_48_bit_rgb_png_is_recorded_as_16_bit() -> None:
    samples = np.zeros((3, 4, 3), np.uint16)
    samples[..., 0] = 0xFF00
    samples[..., 2] = 0x1234
    decoded = decode(png16_rgb(samples), max_pixels=MAX)

    assert decoded.bit_depth == 16
    np.testing.assert_allclose(
        decoded.pixels[0, 0], [0xFF00, 0, 0x1234] / np.float32(65535), atol=1 / 255
    )
    assert read_png16(encode(decoded, decoded.pixels).data)[0] == 16
