"""Encode stage: round trips, formats and options, and what the output keeps of the input
(EXIF, ICC profile, alpha, gray). Every input is built here with Pillow, nothing is read from
disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from imaging.decoding import decode
from imaging.encoding import encode, output_format
from imaging.image_types import DecodedImage, EncodedImage
from shared.errors import InvalidImage, InvalidRequest
from tests.imaging.image_cases import (
    DATE_TIME_ORIGINAL,
    EXIF_IFD,
    MAKE,
    MAX,
    ORIENTATION,
    camera_exif,
    open_image,
    pattern,
    save,
    srgb_icc,
)


@pytest.mark.parametrize(
    ("fmt", "tolerance"), [("JPEG", 0.06), ("PNG", 0.0), ("WEBP", 0.08), ("TIFF", 0.0)]
)
def test_round_trip_keeps_size_format_and_pixels(fmt: str, tolerance: float) -> None:
    source = pattern(24, 40)
    decoded = decode(save(Image.fromarray(source), fmt), max_pixels=MAX)

    assert isinstance(decoded, DecodedImage)
    assert decoded.format == fmt
    assert decoded.mode == "RGB"
    assert decoded.bit_depth == 8
    assert decoded.alpha is None
    assert decoded.pixels.shape == (24, 40, 3)
    assert decoded.pixels.dtype == np.float32
    assert np.abs(decoded.pixels - source / 255.0).max() <= tolerance + 1e-6

    encoded = encode(decoded, decoded.pixels)
    assert isinstance(encoded, EncodedImage)
    extension = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tiff"}[fmt]
    assert (encoded.format, encoded.extension) == (fmt, extension)
    assert encoded.content_type == f"image/{extension[1:].replace('jpg', 'jpeg')}"
    out = open_image(encoded.data)
    assert out.format == fmt
    assert out.size == (40, 24)
    assert out.mode == "RGB"
    back = np.asarray(out, dtype=np.float32) / 255.0
    assert np.abs(back - source / 255.0).max() <= 2 * tolerance + 1e-6


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_encode_to_another_format(fmt: str) -> None:
    decoded = decode(save(Image.fromarray(pattern()), "PNG"), max_pixels=MAX)
    encoded = encode(decoded, decoded.pixels, fmt=fmt)
    assert encoded.format == fmt.upper()
    assert open_image(encoded.data).format == fmt.upper()


def test_encode_clamps_and_quantises() -> None:
    decoded = decode(save(Image.fromarray(pattern(2, 3)), "PNG"), max_pixels=MAX)
    pixels = np.array(
        [
            [[-0.5, 1.5, np.nan], [0.5, 0.25, 1.0], [np.inf, -np.inf, 0.0]],
            [[0.2, 0.4, 0.6], [0.0, 1.0, 0.999], [1e-4, 0.502, 0.498]],
        ],
        dtype=np.float32,
    )
    out = np.asarray(open_image(encode(decoded, pixels).data))
    expected = np.array(
        [
            [[0, 255, 0], [128, 64, 255], [255, 0, 0]],
            [[51, 102, 153], [0, 255, 255], [0, 128, 127]],
        ]
    )
    np.testing.assert_array_equal(out, expected)


def test_encode_rejects_pixels_that_are_not_rgb_floats() -> None:
    decoded = decode(save(Image.fromarray(pattern()), "PNG"), max_pixels=MAX)
    with pytest.raises(ValueError, match="H x W x 3"):
        encode(decoded, np.zeros((24, 40), np.float32))
    with pytest.raises(ValueError, match="floating"):
        encode(decoded, np.zeros((24, 40, 3), np.uint8))


@pytest.mark.parametrize("source_fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_exif_is_carried_to_every_output_format(source_fmt: str, fmt: str) -> None:
    data = save(Image.fromarray(pattern()), source_fmt, exif=camera_exif(6).tobytes())
    decoded = decode(data, max_pixels=MAX)

    out = open_image(encode(decoded, decoded.pixels, fmt=fmt).data)

    exif = out.getexif()
    assert exif[MAKE] == "Darkroom Camera"
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "2021:02:03 04:05:06"
    assert exif.get(ORIENTATION, 1) == 1
    assert out.size == (24, 40)


def test_no_exif_in_means_no_exif_out() -> None:
    decoded = decode(save(Image.fromarray(pattern()), "JPEG"), max_pixels=MAX)
    assert decoded.exif is None
    assert len(open_image(encode(decoded, decoded.pixels).data).getexif()) == 0


@pytest.mark.parametrize("source_fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_icc_profile_is_preserved(source_fmt: str, fmt: str) -> None:
    icc = srgb_icc()
    data = save(Image.fromarray(pattern()), source_fmt, icc_profile=icc)

    decoded = decode(data, max_pixels=MAX)
    assert decoded.icc_profile == icc

    out = open_image(encode(decoded, decoded.pixels, fmt=fmt).data)
    assert out.info.get("icc_profile") == icc


def _rgba_source() -> tuple[np.ndarray, np.ndarray]:
    rgb = pattern(24, 40)
    alpha = np.tile(np.linspace(0, 255, 40).round().astype(np.uint8), (24, 1))
    alpha[:, :5] = 0
    return rgb, alpha


def test_rgba_alpha_is_decoded_and_written_back_to_png() -> None:
    rgb, alpha = _rgba_source()
    data = save(Image.fromarray(np.dstack([rgb, alpha])), "PNG")

    decoded = decode(data, max_pixels=MAX)
    assert decoded.mode == "RGBA"
    assert decoded.alpha is not None
    assert decoded.alpha.shape == (24, 40)
    np.testing.assert_allclose(decoded.alpha, alpha / 255.0, atol=1e-6)
    np.testing.assert_allclose(decoded.pixels, rgb / 255.0, atol=1e-6)  # colour kept under alpha

    out = open_image(encode(decoded, decoded.pixels).data)
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], alpha)
    np.testing.assert_array_equal(np.asarray(out)[:, :, :3], rgb)


@pytest.mark.parametrize(("fmt", "mode"), [("webp", "RGBA"), ("tiff", "RGBA"), ("jpeg", "RGB")])
def test_alpha_kept_where_the_format_has_it(fmt: str, mode: str) -> None:
    rgb, alpha = _rgba_source()
    decoded = decode(save(Image.fromarray(np.dstack([rgb, alpha])), "PNG"), max_pixels=MAX)
    out = open_image(encode(decoded, decoded.pixels, fmt=fmt).data)
    assert out.mode == mode
    if mode == "RGBA":
        assert np.abs(np.asarray(out)[:, :, 3].astype(int) - alpha).max() <= 2


def test_alpha_follows_an_upscaled_result() -> None:
    rgb, alpha = _rgba_source()
    decoded = decode(save(Image.fromarray(np.dstack([rgb, alpha])), "PNG"), max_pixels=MAX)
    upscaled = decoded.pixels.repeat(2, axis=0).repeat(2, axis=1)

    out = open_image(encode(decoded, upscaled).data)

    assert out.size == (80, 48)
    assert out.mode == "RGBA"
    out_alpha = np.asarray(out)[:, :, 3]
    assert out_alpha[:, :8].max() <= 2  # the transparent strip is still transparent
    assert out_alpha[:, -1].min() >= 250


def test_16_bit_gray_input_gives_a_16_bit_gray_png_with_metadata() -> None:
    values = np.array([[0, 1, 1000, 1100], [257, 30000, 65534, 65535]], dtype=np.uint16)
    data = save(Image.fromarray(values), "PNG", exif=camera_exif())
    decoded = decode(data, max_pixels=MAX)

    encoded = encode(decoded, decoded.pixels)

    out = open_image(encoded.data)
    assert out.mode.startswith("I")  # one 16-bit channel, not RGB
    np.testing.assert_array_equal(np.asarray(out).astype(np.uint16), values)
    assert out.getexif()[MAKE] == "Darkroom Camera"


def test_8_bit_gray_stays_gray_and_colour_stays_colour() -> None:
    gray = decode(save(Image.new("L", (6, 4), 77), "JPEG"), max_pixels=MAX)
    assert open_image(encode(gray, gray.pixels).data).mode == "L"
    colour = decode(save(Image.new("RGB", (6, 4), (70, 80, 90)), "JPEG"), max_pixels=MAX)
    assert open_image(encode(colour, colour.pixels).data).mode == "RGB"


def test_result_too_large_for_webp_is_invalid_image() -> None:
    decoded = decode(save(Image.fromarray(pattern(1, 1)), "WEBP"), max_pixels=MAX)
    with pytest.raises(InvalidImage, match="too large for WEBP"):
        encode(decoded, np.zeros((1, 16_384, 3), np.float32))


def test_jpeg_quality_changes_size_and_chroma_subsampling() -> None:
    noise = np.random.default_rng(3).random((64, 64, 3)).astype(np.float32)
    decoded = decode(save(Image.fromarray(pattern(64, 64)), "JPEG"), max_pixels=MAX)

    high = encode(decoded, noise, jpeg_quality=95)
    low = encode(decoded, noise, jpeg_quality=30)

    assert len(low.data) < 0.6 * len(high.data)
    assert JpegImagePlugin.get_sampling(open_image(high.data)) == 0  # 4:4:4
    assert JpegImagePlugin.get_sampling(open_image(low.data)) == 2  # 4:2:0
    with pytest.raises(InvalidRequest):
        encode(decoded, noise, jpeg_quality=0)


def test_webp_quality_changes_size() -> None:
    noise = np.random.default_rng(4).random((64, 64, 3)).astype(np.float32)
    decoded = decode(save(Image.fromarray(pattern(64, 64)), "WEBP"), max_pixels=MAX)
    high = encode(decoded, noise, jpeg_quality=95)
    low = encode(decoded, noise, jpeg_quality=30)
    assert len(low.data) < 0.6 * len(high.data)


@pytest.mark.parametrize(
    ("input_format", "requested", "expected"),
    [
        ("JPEG", None, "JPEG"),
        ("PNG", None, "PNG"),
        ("WEBP", None, "WEBP"),
        ("TIFF", None, "TIFF"),
        ("MPO", None, "JPEG"),
        ("GIF", None, "PNG"),
        ("BMP", None, "PNG"),
        ("ICO", None, "PNG"),
        ("PNG", "jpeg", "JPEG"),
        ("PNG", "JPG", "JPEG"),
        ("JPEG", "PNG", "PNG"),
        ("JPEG", "WebP", "WEBP"),
        ("JPEG", "tiff", "TIFF"),
        ("GIF", "tif", "TIFF"),
    ],
)
def test_output_format(input_format: str, requested: str | None, expected: str) -> None:
    assert output_format(input_format, requested) == expected


@pytest.mark.parametrize("requested", ["bmp", "gif", "", "jpeg2000"])
def test_unknown_output_format_is_refused(requested: str) -> None:
    with pytest.raises(InvalidRequest, match="unsupported output format"):
        output_format("PNG", requested)


def test_bmp_input_is_written_as_png() -> None:
    decoded = decode(save(Image.fromarray(pattern()), "BMP"), max_pixels=MAX)
    encoded = encode(decoded, decoded.pixels)
    assert (decoded.format, encoded.format, encoded.extension) == ("BMP", "PNG", ".png")
    assert encoded.content_type == "image/png"


def test_the_readme_states_what_an_input_in_a_format_darkroom_cannot_write_gives() -> None:
    # The job options table once said "the input's format", and an AVIF came back as a PNG.
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `output_format` |"))
    default = row.split("|")[3]
    for read_only in ("AVIF", "GIF", "BMP"):
        assert output_format(read_only, None) == "PNG"
    assert "PNG" in default and "AVIF" in default
    assert output_format("MPO", None) == "JPEG" and "MPO" in default
