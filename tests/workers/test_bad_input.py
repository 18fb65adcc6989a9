"""Bad and unusual inputs, each as a real job through the session's worker (or, where a job
would add nothing, a direct ``decode`` or submission call): a broken file fails its own job with
``invalid_image`` and a message saying what is wrong; an unusual but legitimate one (16-bit,
CMYK, animated, a Unicode name) is restored.
"""

from __future__ import annotations

import io
import os
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging.decoding import decode
from shared import jobs
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import Job, JobStatus
from shared.errors import InputNotAllowed, InvalidImage, InvalidRequest, ModelNotFound
from shared.queue import make_dispatcher
from shared.storage import make_storage
from tests import services
from tests.conftest import jpeg_bytes, png_declaring


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _noise(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((size[1], size[0], 3)) * 120).astype("uint8")


def _png16(size: tuple[int, int]) -> bytes:
    """A 48-bit RGB PNG (16 bits a sample), written with numpy and zlib: Pillow cannot."""
    width, height = size
    rng = np.random.default_rng(3)
    samples = (rng.random((height, width * 3)) * 30000).astype(">u2")
    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8), samples.view(np.uint8).reshape(height, -1)], axis=1
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big") + kind + body
            + zlib.crc32(kind + body).to_bytes(4, "big")
        )  # fmt: skip

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes())) + chunk(b"IEND", b"")
    )  # fmt: skip


def _animated(fmt: str) -> bytes:
    first = Image.new("RGB", (24, 16), (200, 30, 30))
    second = Image.new("RGB", (24, 16), (30, 30, 200))
    return _save(first, fmt, save_all=True, append_images=[second], duration=100, loop=0)


JPEG = jpeg_bytes((48, 32), seed=5)

BAD: dict[str, tuple[bytes, str]] = {
    # name: (content, what the error message must say)
    "truncated.jpg": (JPEG[: len(JPEG) * 2 // 3], "truncated"),
    "random.jpg": (os.urandom(4096), "not a readable image"),
    "zero.jpg": (b"", "empty file"),
    "notes.png": (b"Shopping: eggs, milk, film\n" * 40, "not a readable image"),
    "bomb.png": (png_declaring(100_000, 100_000), "over the limit"),
    "strip.png": (_save(Image.fromarray(_noise((20_000, 1))), "PNG"), "aspect ratio"),
}


@pytest.fixture
def run_job(settings: Settings, s3, worker: Path) -> Callable[[str, bytes], Job]:  # type: ignore[no-untyped-def]
    """Upload ``data`` under ``name``, submit it to the session's worker, wait for the end."""
    storage = make_storage(settings)
    models = ModelStore(settings, storage)
    dispatcher = make_dispatcher(settings)
    sessions = session_factory(settings.database_url)

    def _run(name: str, data: bytes) -> Job:
        key = f"bad-input/{uuid.uuid4().hex[:8]}/{name}"
        s3.put_object(Bucket=settings.input_bucket, Key=key, Body=data)
        with sessions() as session:
            job, _ = jobs.submit_job(
                session, settings, dispatcher, models, model="mirnet-lol", input_key=key
            )

        def _get() -> Job:
            with sessions() as session:
                return jobs.get_job(session, job.id)

        return services.wait_until(
            _get,
            120,
            message=lambda job: f"the job for {name} to finish (still {job.status})",
            until=lambda job: job.status in (JobStatus.succeeded, JobStatus.failed),
        )

    return _run


@pytest.mark.parametrize("name", list(BAD))
def test_broken_inputs_fail_their_job_with_invalid_image(
    run_job: Callable[[str, bytes], Job], name: str
) -> None:
    data, says = BAD[name]
    job = run_job(name, data)
    assert job.status == JobStatus.failed, name
    assert job.error_code == "invalid_image", (job.error_code, job.error_message)
    assert says in (job.error_message or "").lower(), job.error_message
    assert job.output_key is None


def _result(s3, job: Job) -> bytes:  # type: ignore[no-untyped-def]
    assert job.status == JobStatus.succeeded, (job.error_code, job.error_message)
    return s3.get_object(Bucket=job.output_bucket, Key=job.output_key)["Body"].read()


def test_16_bit_png_is_restored_to_a_16_bit_png(run_job: Callable[[str, bytes], Job], s3) -> None:  # type: ignore[no-untyped-def]
    job = run_job("deep.png", _png16((40, 30)))
    data = _result(s3, job)
    assert data[12:16] == b"IHDR" and data[24] == 16  # bit depth in the header
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (40, 30)


def test_cmyk_jpeg_is_converted_to_rgb_and_restored(
    run_job: Callable[[str, bytes], Job], s3
) -> None:  # type: ignore[no-untyped-def]
    cmyk = Image.fromarray(_noise((40, 30))).convert("CMYK")
    job = run_job("print.jpg", _save(cmyk, "JPEG", quality=95))
    with Image.open(io.BytesIO(_result(s3, job))) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (40, 30))


@pytest.mark.parametrize(("fmt", "name", "out"), [("GIF", "anim.gif", "PNG"),
                                                  ("WEBP", "anim.webp", "WEBP")])  # fmt: skip
def test_animated_images_are_restored_as_their_first_frame(
    run_job: Callable[[str, bytes], Job], s3, fmt: str, name: str, out: str
) -> None:  # type: ignore[no-untyped-def]
    job = run_job(name, _animated(fmt))
    with Image.open(io.BytesIO(_result(s3, job))) as image:
        assert image.format == out and getattr(image, "n_frames", 1) == 1
        assert image.size == (24, 16)
        red, _, blue = np.asarray(image.convert("RGB"), dtype=float).mean(axis=(0, 1))
    # An untrained tiny model changes colours, but the red first frame stays the redder one.
    assert red > blue, (red, blue)


def test_unicode_names_are_kept_in_the_result_key(run_job: Callable[[str, bytes], Job], s3) -> None:  # type: ignore[no-untyped-def]
    job = run_job("ночь à Paris 夜景 🌙.jpg", jpeg_bytes(seed=11))
    assert job.output_key is not None and job.output_key.endswith("/ночь à Paris 夜景 🌙.jpg")
    with Image.open(io.BytesIO(_result(s3, job))) as image:
        image.load()


# ------------------------------------------------------------------- checks before any work


def test_a_decompression_bomb_is_refused_from_its_header_at_once() -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidImage, match="over the limit"):
        decode(png_declaring(100_000, 100_000), max_pixels=100_000_000)
    assert time.perf_counter() - start < 1.0  # nothing was decompressed or allocated


@pytest.mark.parametrize("size", [(1, 20_000), (20_000, 1), (51, 1)])
def test_absurd_aspect_ratios_are_refused_before_decoding(size: tuple[int, int]) -> None:
    data = png_declaring(*size)  # the header alone: no pixel data is needed to refuse
    with pytest.raises(InvalidImage, match=r"aspect ratio of .* over the limit of 50:1"):
        decode(data, max_pixels=100_000_000, max_aspect_ratio=50)


def test_long_panoramas_within_the_limit_are_accepted() -> None:
    decoded = decode(
        _save(Image.fromarray(_noise((500, 10))), "PNG"),
        max_pixels=100_000_000,
        max_aspect_ratio=50,
    )
    assert (decoded.width, decoded.height) == (500, 10)


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd.jpg", "photos/../../secret.jpg", "/abs/path.jpg", "a\\..\\b.jpg", "x\x00.jpg"],
)
def test_traversal_and_malformed_keys_are_refused_at_submission(
    settings: Settings, key: str
) -> None:
    storage = make_storage(settings)
    with session_factory(settings.database_url)() as session, pytest.raises(InvalidRequest):
        jobs.submit_job(
            session, settings, make_dispatcher(settings), ModelStore(settings, storage),
            model="mirnet-lol", input_key=key,
        )  # fmt: skip


def test_buckets_outside_the_allowed_ones_and_unknown_models_are_refused(
    settings: Settings,
) -> None:
    storage = make_storage(settings)
    models = ModelStore(settings, storage)
    dispatcher = make_dispatcher(settings)
    with session_factory(settings.database_url)() as session:
        with pytest.raises(InputNotAllowed):
            jobs.submit_job(session, settings, dispatcher, models, model="mirnet-lol",
                               input_key="a.jpg", input_bucket="someone-elses-bucket")  # fmt: skip
        with pytest.raises(ModelNotFound):
            jobs.submit_job(session, settings, dispatcher, models, model="no-such-model",
                               input_key="a.jpg")  # fmt: skip
