"""Decode stage: orientation, modes, bit depths, profiles, and every way an upload can be broken.

Every input is built here with Pillow (or by hand), nothing is read from disk."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image, ImageFile

from imaging.decoding import decode
from imaging.encoding import encode
from shared.errors import InvalidImage
from tests.imaging.image_cases import (
    MAKE,
    MAX,
    ORIENTATION,
    RED,
    camera_exif,
    open_image,
    pattern,
    save,
    srgb_icc,
    with_declared_size,
)

# What a viewer shows for each EXIF orientation of a stored array (EXIF 2.32, tag 0x0112).
_DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(orientation: int) -> None:
    stored = pattern(24, 40)
    stored[0, 0] = RED
    data = save(Image.fromarray(stored), "PNG", exif=camera_exif(orientation))

    decoded = decode(data, max_pixels=MAX)

    expected = _DISPLAYED[orientation](stored)
    assert decoded.pixels.shape == expected.shape
    np.testing.assert_array_equal(np.rint(decoded.pixels * 255).astype(np.uint8), expected)


@pytest.mark.parametrize(
    ("orientation", "shape", "corner"),
    [(3, (24, 40), (23, 39)), (6, (40, 24), (0, 23)), (8, (40, 24), (39, 0))],
)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_rotated_photo_comes_out_upright_and_is_not_rotated_twice(
    fmt: str, orientation: int, shape: tuple[int, int], corner: tuple[int, int]
) -> None:
    stored = pattern(24, 40)
    stored[:8, :8] = RED  # a block, so it survives JPEG
    data = save(Image.fromarray(stored), fmt, exif=camera_exif(orientation), quality=95)

    decoded = decode(data, max_pixels=MAX)

    assert decoded.pixels.shape == (*shape, 3)
    assert np.abs(decoded.pixels[corner] - np.array([1.0, 0.0, 0.0])).max() < 0.1
    assert decoded.exif is not None
    kept = Image.Exif()
    kept.load(decoded.exif)
    assert ORIENTATION not in kept or kept[ORIENTATION] == 1
    assert kept[MAKE] == "Darkroom Camera"

    out = open_image(encode(decoded, decoded.pixels).data)
    assert out.size == (shape[1], shape[0])
    assert out.getexif().get(ORIENTATION, 1) == 1
    assert out.getexif()[MAKE] == "Darkroom Camera"


def test_palette_transparency_becomes_alpha_and_gif_becomes_png() -> None:
    image = Image.new("P", (10, 6), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 5, 6))
    data = save(image, "GIF", transparency=0)

    decoded = decode(data, max_pixels=MAX)

    assert (decoded.format, decoded.mode) == ("GIF", "P")
    assert decoded.alpha is not None
    assert decoded.alpha[:, :5].max() == 0.0
    assert decoded.alpha[:, 5:].min() == 1.0
    np.testing.assert_array_equal(decoded.pixels[0, 9], [1.0, 0.0, 0.0])
    encoded = encode(decoded, decoded.pixels)
    assert (encoded.format, open_image(encoded.data).mode) == ("PNG", "RGBA")


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, (0, 0, 255))]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(open_image(data), "n_frames", 1) == 2

    decoded = decode(data, max_pixels=MAX)

    np.testing.assert_allclose(decoded.pixels[4, 4], [1.0, 0.0, 0.0], atol=0.02)


def test_grayscale_png_decodes_to_equal_channels() -> None:
    gray = np.arange(0, 240, 10, dtype=np.uint8).reshape(4, 6)
    decoded = decode(save(Image.fromarray(gray), "PNG"), max_pixels=MAX)

    assert (decoded.mode, decoded.bit_depth) == ("L", 8)
    assert decoded.pixels.shape == (4, 6, 3)
    for channel in range(3):
        np.testing.assert_allclose(decoded.pixels[:, :, channel], gray / 255.0, atol=1e-6)


def test_grayscale_with_alpha_and_bilevel() -> None:
    la = decode(save(Image.new("LA", (5, 4), (200, 100)), "PNG"), max_pixels=MAX)
    assert la.alpha is not None
    np.testing.assert_allclose(la.alpha, 100 / 255.0, atol=1e-6)
    np.testing.assert_allclose(la.pixels, 200 / 255.0, atol=1e-6)

    bilevel = decode(save(Image.new("1", (5, 4), 1), "PNG"), max_pixels=MAX)
    assert bilevel.mode == "1"
    np.testing.assert_array_equal(bilevel.pixels, np.ones((4, 5, 3), np.float32))


def test_16_bit_grayscale_png_keeps_full_precision() -> None:
    values = np.array([[0, 1, 1000, 1100], [257, 30000, 65534, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    decoded = decode(save(image, "PNG"), max_pixels=MAX)

    assert decoded.bit_depth == 16
    assert decoded.mode == "I;16"
    assert decoded.pixels.shape == (2, 4, 3)
    np.testing.assert_allclose(decoded.pixels[:, :, 1], values / 65535.0, rtol=0, atol=1e-7)
    # 1000 and 1100 are the same 8-bit value: only a 16-bit decode tells them apart.
    assert decoded.pixels[0, 2, 0] < decoded.pixels[0, 3, 0]


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("I;16B", 40000, 40000 / 65535), ("I", 30000, 30000 / 65535), ("F", 0.25, 0.25)],
)
def test_high_depth_tiff_modes(mode: str, value: float, expected: float) -> None:
    data = save(Image.new(mode, (6, 4), value), "TIFF")
    decoded = decode(data, max_pixels=MAX)

    assert decoded.mode == mode
    assert decoded.bit_depth == 16
    assert decoded.pixels.shape == (4, 6, 3)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-6)


def test_cmyk_jpeg_decodes_to_rgb_without_its_profile() -> None:
    # An RGB profile on CMYK data is wrong either way; it must not reach the RGB output.
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))
    data = save(cmyk, "JPEG", quality=95, icc_profile=srgb_icc())
    assert open_image(data).info.get("icc_profile")
    decoded = decode(data, max_pixels=MAX)

    assert (decoded.format, decoded.mode) == ("JPEG", "CMYK")
    assert decoded.pixels.shape == (8, 16, 3)
    np.testing.assert_allclose(decoded.pixels[4, 8], [1.0, 0.0, 0.0], atol=0.05)
    assert decoded.icc_profile is None  # a CMYK profile would mislabel RGB output
    assert open_image(encode(decoded, decoded.pixels).data).mode == "RGB"


def test_a_gray_profile_is_not_attached_to_rgb_output() -> None:
    gray_icc = bytearray(srgb_icc())
    gray_icc[16:20] = b"GRAY"  # the header's colour space field is what decides
    data = save(Image.new("L", (4, 4), 128), "PNG", icc_profile=bytes(gray_icc))
    assert open_image(data).info.get("icc_profile") == bytes(gray_icc)

    assert decode(data, max_pixels=MAX).icc_profile is None


def test_truncated_jpegs_are_never_accepted() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    noise = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    data = save(Image.fromarray(noise), "JPEG", quality=90)
    decode(data, max_pixels=MAX)  # the whole file is fine

    for cut in (len(data) - 2, len(data) - 50, len(data) // 2, 400, 30):
        with pytest.raises(InvalidImage) as caught:
            decode(data[:cut], max_pixels=MAX)
        assert caught.value.code == "invalid_image"
        assert caught.value.message


def test_truncated_and_corrupt_pngs() -> None:
    data = save(Image.fromarray(pattern()), "PNG")
    with pytest.raises(InvalidImage, match="PNG"):
        decode(data[: len(data) // 2], max_pixels=MAX)
    corrupt = bytearray(data)
    idat = corrupt.index(b"IDAT")
    corrupt[idat + 10] ^= 0xFF
    with pytest.raises(InvalidImage):
        decode(bytes(corrupt), max_pixels=MAX)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (np.random.default_rng(2).bytes(4096), "not a readable image"),
        (b"Dear photo lab,\nplease restore my holiday pictures.\n" * 20, "not a readable image"),
        (b"\x89PNG\r\n\x1a\n", "not a readable image"),
        (b"\xff\xd8\xff", "not a readable image"),
    ],
    ids=["empty", "random-bytes", "text", "png-signature-only", "jpeg-soi-only"],
)
def test_non_images_are_invalid_image(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        decode(data, max_pixels=MAX)


@pytest.mark.parametrize(
    ("width", "height", "in_message"),
    [
        (5000, 4000, "5000x4000"),  # under Pillow's own bomb limits: our check
        (10_000, 9_500, "10000x9500"),  # over Pillow's warning: still our message, no warning
        (100_000, 100_000, "10,000,000,000 pixels"),  # over Pillow's hard bomb error
    ],
)
def test_declared_size_over_the_limit_is_refused_before_loading(
    width: int, height: int, in_message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = with_declared_size(save(Image.fromarray(pattern(16, 16)), "PNG"), width, height)
    loads: list[object] = []
    original_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: loads.append(self) or original_load(self)
    )

    started = time.perf_counter()
    with pytest.raises(InvalidImage, match="limit of 1,000,000 pixels") as caught:
        decode(data, max_pixels=1_000_000)

    assert time.perf_counter() - started < 1.0
    assert in_message in caught.value.message
    assert loads == []  # refused from the header, no pixel data decoded


def test_size_at_the_limit_is_accepted() -> None:
    data = save(Image.fromarray(pattern(20, 50)), "PNG")
    assert decode(data, max_pixels=1000).pixels.shape == (20, 50, 3)
    with pytest.raises(InvalidImage, match="limit of 999 pixels"):
        decode(data, max_pixels=999)
