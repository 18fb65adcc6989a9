"""Decode/encode stages: every input is built here with Pillow, nothing is read from disk."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, JpegImagePlugin

from shared.errors import InvalidImage, InvalidRequest
from workers.imaging import DecodedImage, EncodedImage, decode, encode, output_format

MAX = 10_000_000
ORIENTATION = ExifTags.Base.Orientation
MAKE = ExifTags.Base.Make
EXIF_IFD = ExifTags.IFD.Exif
DATE_TIME_ORIGINAL = ExifTags.Base.DateTimeOriginal
RED = (255, 0, 0)


def _pattern(height: int = 24, width: int = 40) -> np.ndarray:
    """A smooth, non-symmetric RGB pattern (lossy codecs keep it close; no two corners alike)."""
    y, x = np.mgrid[0:height, 0:width]
    r = 30 + 150 * x / max(width - 1, 1)
    g = 30 + 150 * y / max(height - 1, 1)
    b = np.full_like(r, 90.0)
    return np.stack([r, g, b], axis=2).round().astype(np.uint8)


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "Darkroom Camera"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = "2021:02:03 04:05:06"
    return exif


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
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


def _read_png16(data: bytes) -> tuple[int, int, np.ndarray]:
    """Independent reader for the 16-bit PNGs we write (filters None/Up only): Pillow reads 8."""
    chunks = _png_chunks(data)
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


def _png16_rgb(samples: np.ndarray) -> bytes:
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


def _with_declared_size(png: bytes, width: int, height: int) -> bytes:
    """Patch a PNG's IHDR to claim another size (and fix its CRC): a decompression-bomb header."""
    assert png[12:16] == b"IHDR"
    body = struct.pack(">II", width, height) + png[24:29]
    return png[:16] + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) + png[33:]


# ------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("fmt", "tolerance"), [("JPEG", 0.06), ("PNG", 0.0), ("WEBP", 0.08), ("TIFF", 0.0)]
)
def test_round_trip_keeps_size_format_and_pixels(fmt: str, tolerance: float) -> None:
    source = _pattern(24, 40)
    decoded = decode(_save(Image.fromarray(source), fmt), max_pixels=MAX)

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
    out = _open(encoded.data)
    assert out.format == fmt
    assert out.size == (40, 24)
    assert out.mode == "RGB"
    back = np.asarray(out, dtype=np.float32) / 255.0
    assert np.abs(back - source / 255.0).max() <= 2 * tolerance + 1e-6


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_encode_to_another_format(fmt: str) -> None:
    decoded = decode(_save(Image.fromarray(_pattern()), "PNG"), max_pixels=MAX)
    encoded = encode(decoded, decoded.pixels, fmt=fmt)
    assert encoded.format == fmt.upper()
    assert _open(encoded.data).format == fmt.upper()


def test_encode_clamps_and_quantises() -> None:
    decoded = decode(_save(Image.fromarray(_pattern(2, 3)), "PNG"), max_pixels=MAX)
    pixels = np.array(
        [
            [[-0.5, 1.5, np.nan], [0.5, 0.25, 1.0], [np.inf, -np.inf, 0.0]],
            [[0.2, 0.4, 0.6], [0.0, 1.0, 0.999], [1e-4, 0.502, 0.498]],
        ],
        dtype=np.float32,
    )
    out = np.asarray(_open(encode(decoded, pixels).data))
    expected = np.array(
        [
            [[0, 255, 0], [128, 64, 255], [255, 0, 0]],
            [[51, 102, 153], [0, 255, 255], [0, 128, 127]],
        ]
    )
    np.testing.assert_array_equal(out, expected)


def test_encode_rejects_pixels_that_are_not_rgb_floats() -> None:
    decoded = decode(_save(Image.fromarray(_pattern()), "PNG"), max_pixels=MAX)
    with pytest.raises(ValueError, match="H x W x 3"):
        encode(decoded, np.zeros((24, 40), np.float32))
    with pytest.raises(ValueError, match="floating"):
        encode(decoded, np.zeros((24, 40, 3), np.uint8))


# ----------------------------------------------------------------------------- orientation

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
    stored = _pattern(24, 40)
    stored[0, 0] = RED
    data = _save(Image.fromarray(stored), "PNG", exif=_exif(orientation))

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
    stored = _pattern(24, 40)
    stored[:8, :8] = RED  # a block, so it survives JPEG
    data = _save(Image.fromarray(stored), fmt, exif=_exif(orientation), quality=95)

    decoded = decode(data, max_pixels=MAX)

    assert decoded.pixels.shape == (*shape, 3)
    assert np.abs(decoded.pixels[corner] - np.array([1.0, 0.0, 0.0])).max() < 0.1
    assert decoded.exif is not None
    kept = Image.Exif()
    kept.load(decoded.exif)
    assert ORIENTATION not in kept or kept[ORIENTATION] == 1
    assert kept[MAKE] == "Darkroom Camera"

    out = _open(encode(decoded, decoded.pixels).data)
    assert out.size == (shape[1], shape[0])
    assert out.getexif().get(ORIENTATION, 1) == 1
    assert out.getexif()[MAKE] == "Darkroom Camera"


@pytest.mark.parametrize("source_fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_exif_is_carried_to_every_output_format(source_fmt: str, fmt: str) -> None:
    data = _save(Image.fromarray(_pattern()), source_fmt, exif=_exif(6).tobytes())
    decoded = decode(data, max_pixels=MAX)

    out = _open(encode(decoded, decoded.pixels, fmt=fmt).data)

    exif = out.getexif()
    assert exif[MAKE] == "Darkroom Camera"
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "2021:02:03 04:05:06"
    assert exif.get(ORIENTATION, 1) == 1
    assert out.size == (24, 40)


def test_no_exif_in_means_no_exif_out() -> None:
    decoded = decode(_save(Image.fromarray(_pattern()), "JPEG"), max_pixels=MAX)
    assert decoded.exif is None
    assert len(_open(encode(decoded, decoded.pixels).data).getexif()) == 0


# ---------------------------------------------------------------------- ICC profile and alpha


@pytest.mark.parametrize("source_fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_icc_profile_is_preserved(source_fmt: str, fmt: str) -> None:
    icc = _srgb_icc()
    data = _save(Image.fromarray(_pattern()), source_fmt, icc_profile=icc)

    decoded = decode(data, max_pixels=MAX)
    assert decoded.icc_profile == icc

    out = _open(encode(decoded, decoded.pixels, fmt=fmt).data)
    assert out.info.get("icc_profile") == icc


def _rgba_source() -> tuple[np.ndarray, np.ndarray]:
    rgb = _pattern(24, 40)
    alpha = np.tile(np.linspace(0, 255, 40).round().astype(np.uint8), (24, 1))
    alpha[:, :5] = 0
    return rgb, alpha


def test_rgba_alpha_is_decoded_and_written_back_to_png() -> None:
    rgb, alpha = _rgba_source()
    data = _save(Image.fromarray(np.dstack([rgb, alpha])), "PNG")

    decoded = decode(data, max_pixels=MAX)
    assert decoded.mode == "RGBA"
    assert decoded.alpha is not None
    assert decoded.alpha.shape == (24, 40)
    np.testing.assert_allclose(decoded.alpha, alpha / 255.0, atol=1e-6)
    np.testing.assert_allclose(decoded.pixels, rgb / 255.0, atol=1e-6)  # colour kept under alpha

    out = _open(encode(decoded, decoded.pixels).data)
    assert out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], alpha)
    np.testing.assert_array_equal(np.asarray(out)[:, :, :3], rgb)


@pytest.mark.parametrize(("fmt", "mode"), [("webp", "RGBA"), ("tiff", "RGBA"), ("jpeg", "RGB")])
def test_alpha_kept_where_the_format_has_it(fmt: str, mode: str) -> None:
    rgb, alpha = _rgba_source()
    decoded = decode(_save(Image.fromarray(np.dstack([rgb, alpha])), "PNG"), max_pixels=MAX)
    out = _open(encode(decoded, decoded.pixels, fmt=fmt).data)
    assert out.mode == mode
    if mode == "RGBA":
        assert np.abs(np.asarray(out)[:, :, 3].astype(int) - alpha).max() <= 2


def test_alpha_follows_an_upscaled_result() -> None:
    rgb, alpha = _rgba_source()
    decoded = decode(_save(Image.fromarray(np.dstack([rgb, alpha])), "PNG"), max_pixels=MAX)
    upscaled = decoded.pixels.repeat(2, axis=0).repeat(2, axis=1)

    out = _open(encode(decoded, upscaled).data)

    assert out.size == (80, 48)
    assert out.mode == "RGBA"
    out_alpha = np.asarray(out)[:, :, 3]
    assert out_alpha[:, :8].max() <= 2  # the transparent strip is still transparent
    assert out_alpha[:, -1].min() >= 250


def test_palette_transparency_becomes_alpha_and_gif_becomes_png() -> None:
    image = Image.new("P", (10, 6), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 5, 6))
    data = _save(image, "GIF", transparency=0)

    decoded = decode(data, max_pixels=MAX)

    assert (decoded.format, decoded.mode) == ("GIF", "P")
    assert decoded.alpha is not None
    assert decoded.alpha[:, :5].max() == 0.0
    assert decoded.alpha[:, 5:].min() == 1.0
    np.testing.assert_array_equal(decoded.pixels[0, 9], [1.0, 0.0, 0.0])
    encoded = encode(decoded, decoded.pixels)
    assert (encoded.format, _open(encoded.data).mode) == ("PNG", "RGBA")


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, (0, 0, 255))]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(_open(data), "n_frames", 1) == 2

    decoded = decode(data, max_pixels=MAX)

    np.testing.assert_allclose(decoded.pixels[4, 4], [1.0, 0.0, 0.0], atol=0.02)


# ---------------------------------------------------------------------------------- modes


def test_grayscale_png_decodes_to_equal_channels() -> None:
    gray = np.arange(0, 240, 10, dtype=np.uint8).reshape(4, 6)
    decoded = decode(_save(Image.fromarray(gray), "PNG"), max_pixels=MAX)

    assert (decoded.mode, decoded.bit_depth) == ("L", 8)
    assert decoded.pixels.shape == (4, 6, 3)
    for channel in range(3):
        np.testing.assert_allclose(decoded.pixels[:, :, channel], gray / 255.0, atol=1e-6)


def test_grayscale_with_alpha_and_bilevel() -> None:
    la = decode(_save(Image.new("LA", (5, 4), (200, 100)), "PNG"), max_pixels=MAX)
    assert la.alpha is not None
    np.testing.assert_allclose(la.alpha, 100 / 255.0, atol=1e-6)
    np.testing.assert_allclose(la.pixels, 200 / 255.0, atol=1e-6)

    bilevel = decode(_save(Image.new("1", (5, 4), 1), "PNG"), max_pixels=MAX)
    assert bilevel.mode == "1"
    np.testing.assert_array_equal(bilevel.pixels, np.ones((4, 5, 3), np.float32))


def test_16_bit_grayscale_png_keeps_full_precision() -> None:
    values = np.array([[0, 1, 1000, 1100], [257, 30000, 65534, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    decoded = decode(_save(image, "PNG"), max_pixels=MAX)

    assert decoded.bit_depth == 16
    assert decoded.mode == "I;16"
    assert decoded.pixels.shape == (2, 4, 3)
    np.testing.assert_allclose(decoded.pixels[:, :, 1], values / 65535.0, rtol=0, atol=1e-7)
    # 1000 and 1100 are the same 8-bit value: only a 16-bit decode tells them apart.
    assert decoded.pixels[0, 2, 0] < decoded.pixels[0, 3, 0]


def test_16_bit_gray_input_gives_a_16_bit_gray_png_with_metadata() -> None:
    values = np.array([[0, 1, 1000, 1100], [257, 30000, 65534, 65535]], dtype=np.uint16)
    data = _save(Image.fromarray(values), "PNG", exif=_exif())
    decoded = decode(data, max_pixels=MAX)

    encoded = encode(decoded, decoded.pixels)

    out = _open(encoded.data)
    assert out.mode.startswith("I")  # one 16-bit channel, not RGB
    np.testing.assert_array_equal(np.asarray(out).astype(np.uint16), values)
    assert out.getexif()[MAKE] == "Darkroom Camera"


def test_8_bit_gray_stays_gray_and_colour_stays_colour() -> None:
    gray = decode(_save(Image.new("L", (6, 4), 77), "JPEG"), max_pixels=MAX)
    assert _open(encode(gray, gray.pixels).data).mode == "L"
    colour = decode(_save(Image.new("RGB", (6, 4), (70, 80, 90)), "JPEG"), max_pixels=MAX)
    assert _open(encode(colour, colour.pixels).data).mode == "RGB"


def test_16_bit_colour_png_output_is_16_bit() -> None:
    icc = _srgb_icc()
    decoded = decode(
        _save(Image.new("RGB", (4, 2), (10, 200, 30)), "PNG", icc_profile=icc), max_pixels=MAX
    )
    decoded.bit_depth = 16  # Pillow reads 16-bit colour PNGs as 8-bit; the writer still must work
    depth, color_type, samples = _read_png16(encode(decoded, decoded.pixels).data)
    assert (depth, color_type) == (16, 2)
    np.testing.assert_array_equal(samples[0, 0], [10 * 257, 200 * 257, 30 * 257])
    assert _open(encode(decoded, decoded.pixels).data).info.get("icc_profile") == icc


def test_16_bit_rgba_png_output_keeps_alpha() -> None:
    decoded = decode(
        _save(Image.fromarray(np.full((3, 5), 40000, np.uint16)), "PNG"), max_pixels=MAX
    )
    decoded.alpha = np.linspace(0, 1, 15, dtype=np.float32).reshape(3, 5)

    depth, color_type, samples = _read_png16(encode(decoded, decoded.pixels).data)

    assert (depth, color_type) == (16, 6)
    np.testing.assert_array_equal(samples[:, :, 0], 40000)
    np.testing.assert_array_equal(samples[:, :, 3], np.rint(decoded.alpha * 65535))


def test_48_bit_rgb_png_is_recorded_as_16_bit() -> None:
    samples = np.zeros((3, 4, 3), np.uint16)
    samples[..., 0] = 0xFF00
    samples[..., 2] = 0x1234
    decoded = decode(_png16_rgb(samples), max_pixels=MAX)

    assert decoded.bit_depth == 16
    np.testing.assert_allclose(
        decoded.pixels[0, 0], [0xFF00, 0, 0x1234] / np.float32(65535), atol=1 / 255
    )
    assert _read_png16(encode(decoded, decoded.pixels).data)[0] == 16


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("I;16B", 40000, 40000 / 65535), ("I", 30000, 30000 / 65535), ("F", 0.25, 0.25)],
)
def test_high_depth_tiff_modes(mode: str, value: float, expected: float) -> None:
    data = _save(Image.new(mode, (6, 4), value), "TIFF")
    decoded = decode(data, max_pixels=MAX)

    assert decoded.mode == mode
    assert decoded.bit_depth == 16
    assert decoded.pixels.shape == (4, 6, 3)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-6)


def test_cmyk_jpeg_decodes_to_rgb_without_its_profile() -> None:
    # An RGB profile on CMYK data is wrong either way; it must not reach the RGB output.
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))
    data = _save(cmyk, "JPEG", quality=95, icc_profile=_srgb_icc())
    assert _open(data).info.get("icc_profile")
    decoded = decode(data, max_pixels=MAX)

    assert (decoded.format, decoded.mode) == ("JPEG", "CMYK")
    assert decoded.pixels.shape == (8, 16, 3)
    np.testing.assert_allclose(decoded.pixels[4, 8], [1.0, 0.0, 0.0], atol=0.05)
    assert decoded.icc_profile is None  # a CMYK profile would mislabel RGB output
    assert _open(encode(decoded, decoded.pixels).data).mode == "RGB"


def test_a_gray_profile_is_not_attached_to_rgb_output() -> None:
    gray_icc = bytearray(_srgb_icc())
    gray_icc[16:20] = b"GRAY"  # the header's colour space field is what decides
    data = _save(Image.new("L", (4, 4), 128), "PNG", icc_profile=bytes(gray_icc))
    assert _open(data).info.get("icc_profile") == bytes(gray_icc)

    assert decode(data, max_pixels=MAX).icc_profile is None


# ----------------------------------------------------------------------------- bad inputs


def test_truncated_jpegs_are_never_accepted() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    noise = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    data = _save(Image.fromarray(noise), "JPEG", quality=90)
    decode(data, max_pixels=MAX)  # the whole file is fine

    for cut in (len(data) - 2, len(data) - 50, len(data) // 2, 400, 30):
        with pytest.raises(InvalidImage) as caught:
            decode(data[:cut], max_pixels=MAX)
        assert caught.value.code == "invalid_image"
        assert caught.value.message


def test_truncated_and_corrupt_pngs() -> None:
    data = _save(Image.fromarray(_pattern()), "PNG")
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
    data = _with_declared_size(_save(Image.fromarray(_pattern(16, 16)), "PNG"), width, height)
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
    data = _save(Image.fromarray(_pattern(20, 50)), "PNG")
    assert decode(data, max_pixels=1000).pixels.shape == (20, 50, 3)
    with pytest.raises(InvalidImage, match="limit of 999 pixels"):
        decode(data, max_pixels=999)


def test_result_too_large_for_webp_is_invalid_image() -> None:
    decoded = decode(_save(Image.fromarray(_pattern(1, 1)), "WEBP"), max_pixels=MAX)
    with pytest.raises(InvalidImage, match="too large for WEBP"):
        encode(decoded, np.zeros((1, 16_384, 3), np.float32))


# -------------------------------------------------------------------- options and formats


def test_jpeg_quality_changes_size_and_chroma_subsampling() -> None:
    noise = np.random.default_rng(3).random((64, 64, 3)).astype(np.float32)
    decoded = decode(_save(Image.fromarray(_pattern(64, 64)), "JPEG"), max_pixels=MAX)

    high = encode(decoded, noise, jpeg_quality=95)
    low = encode(decoded, noise, jpeg_quality=30)

    assert len(low.data) < 0.6 * len(high.data)
    assert JpegImagePlugin.get_sampling(_open(high.data)) == 0  # 4:4:4
    assert JpegImagePlugin.get_sampling(_open(low.data)) == 2  # 4:2:0
    with pytest.raises(InvalidRequest):
        encode(decoded, noise, jpeg_quality=0)


def test_webp_quality_changes_size() -> None:
    noise = np.random.default_rng(4).random((64, 64, 3)).astype(np.float32)
    decoded = decode(_save(Image.fromarray(_pattern(64, 64)), "WEBP"), max_pixels=MAX)
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
    decoded = decode(_save(Image.fromarray(_pattern()), "BMP"), max_pixels=MAX)
    encoded = encode(decoded, decoded.pixels)
    assert (decoded.format, encoded.format, encoded.extension) == ("BMP", "PNG", ".png")
    assert encoded.content_type == "image/png"
