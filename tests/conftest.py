"""Session fixtures: real PostgreSQL, Redis, an S3 endpoint and a Celery worker.

Each test session gets its own PostgreSQL database, Redis database number and buckets, migrated
by Alembic, so runs never see each other's jobs. Every service starts only when a test asks
for it (nothing here is autouse): a test that requests none of them never touches one.

The fast tier, ``pytest --fast`` (``scripts/test.sh --fast``): the tests that need no service
and no long run, in well under a minute. Pure code: tiling, imaging, options, schemas,
signatures, settings, degradation, logs, model files, the batcher, the compose files. It
deselects every test that

- requests, directly or through other fixtures, one of :data:`SERVICE_FIXTURES` (PostgreSQL,
  Redis, the moto S3 server, a Celery worker, the API client on them),
- is marked ``e2e`` (end to end against the real services), or
- is marked ``slow`` (registered below): it needs no service but takes seconds, running
  Darkroom's own processes (the CLI, ``darkroom serve``), ``torch.compile``, a full-size model
  or the shipped weights on real photos.

Without ``--fast`` everything runs. A test that reaches a service without one of these
fixtures (``services.scratch_database`` in its body, say) belongs behind a fixture.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from shared.config import Settings
from shared.db.migrate import upgrade
from shared.db.tables import FINISHED, JobStatus
from tests import services
from tests.s3_auth import S3Endpoint

# Concurrent local runs (several developers or agents on one machine) pick different numbers.
REDIS_DB = int(os.environ.get("DARKROOM_TEST_REDIS_DB", "11"))

SERVICE_FIXTURES = frozenset(
    {
        # conftest's session services, and what is built on them
        "postgres_url",
        "empty_postgres_url",
        "redis_url",
        "s3_endpoint",
        "service_env",
        "settings",
        "s3",
        "worker",
        "client",
        "wait_job",
        # test modules' own: a private redis-server
        "private_redis",
    }
)
"""Fixtures that start or reach a service. ``--fast`` deselects every test that requests one,
directly or through another fixture."""


FAST_TIER_EXCLUDES_MARKS = ("e2e", "slow")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="run only the fast tier: no service, no long run (see tests/conftest.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: needs no service but takes seconds (Darkroom's own processes, torch.compile, "
        "full-size models, the shipped weights on real photos); left out of --fast",
    )


def _needs_more_than_the_fast_tier(item: pytest.Item) -> bool:
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return any(item.get_closest_marker(mark) for mark in FAST_TIER_EXCLUDES_MARKS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("fast"):
        return
    left_out = [item for item in items if _needs_more_than_the_fast_tier(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _needs_more_than_the_fast_tier(item)]


def shared_dir() -> Path:
    return Path(
        os.environ.get("DARKROOM_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared")
    )


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """For a module of real networks on the CPU: the CI box is small and shared, and one
    thread is several times faster than contending."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("darkroom")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, migrated to head, dropped afterwards."""
    with services.scratch_database("darkroom_test") as url:
        upgrade(url)
        yield url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A database of the test's own on the machine's PostgreSQL, not migrated, dropped after."""
    with services.scratch_database("darkroom_scratch") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = f"{services.REDIS_URL}/{REDIS_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session")
def s3_endpoint(tmp_session: Path) -> Iterator[S3Endpoint]:
    """moto checking signatures, with the key the suite uses (``tests.s3_auth``)."""
    proc, endpoint = services.start_moto(tmp_session / "moto.log")
    yield endpoint
    endpoint.close()
    services.stop(proc)


@pytest.fixture(scope="session")
def model_dir(tmp_session: Path) -> Path:
    """A small MIRNet with random weights, saved in the published checkpoint layout.

    Tests only: it exercises the real loading and inference path at a size a CPU runs fast.
    """
    import torch

    from restoration.architectures.mirnet import MIRNet, save_mirnet_checkpoint

    torch.manual_seed(0)
    folder = tmp_session / "models"
    folder.mkdir()
    model = MIRNet(num_features=16, number_msrb=1, number_rrg=1)
    save_mirnet_checkpoint(model, folder / "mirnet-lol.pt")
    return folder


@pytest.fixture(scope="session")
def service_env(
    postgres_url: str, redis_url: str, s3_endpoint: S3Endpoint, model_dir: Path, tmp_session: Path
) -> dict[str, str]:
    env = {
        **services.darkroom_env(
            tmp_session / "home", postgres_url, redis_url, s3_endpoint, "darkroom-test"
        ),
        "DARKROOM_MODEL_DIR": str(model_dir),
        "DARKROOM_RETRY_BACKOFF_S": "0.2",
        "DARKROOM_DEVICE": "cpu",
        # Webhook receivers in tests listen on loopback.
        "DARKROOM_WEBHOOK_ALLOW_PRIVATE": "true",
        "DARKROOM_WEBHOOK_SECRET": "default-tenant-secret",
        "DARKROOM_WEBHOOK_POLL_INTERVAL_S": "0.2",
        # Many workers share this host in a test run: the tests that scrape one give it a port.
        "DARKROOM_WORKER_METRICS_PORT": "0",
    }
    return env


def settings_from_env(env: dict[str, str]) -> Settings:
    """The configuration a worker process started with ``env`` reads."""
    fields: dict[str, Any] = {key.removeprefix("DARKROOM_").lower(): v for key, v in env.items()}
    return Settings(**fields)


@pytest.fixture(scope="session")
def settings(service_env: dict[str, str]) -> Settings:
    """The same configuration the worker process reads from its environment."""
    return settings_from_env(service_env)


@pytest.fixture(scope="session")
def s3(settings: Settings, s3_endpoint: S3Endpoint):  # type: ignore[no-untyped-def]
    return services.s3_client(s3_endpoint, [settings.input_bucket, settings.output_bucket])


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str], s3: object, tmp_session: Path) -> Iterator[Path]:
    log = tmp_session / "worker.log"
    proc = services.start_worker(service_env, log)
    yield log
    services.stop(proc)


@pytest.fixture(scope="session")
def client(settings: Settings, s3: object) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def jpeg_bytes(
    size: tuple[int, int] = (64, 48), orientation: int | None = None, seed: int = 0
) -> bytes:
    """A small JPEG with structure (so restoration has something to do)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = (rng.random((size[1], size[0], 3)) * 80).astype("uint8")
    pixels[: size[1] // 4, : size[0] // 4] = 255  # a bright top-left marker
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def png_declaring(width: int, height: int, bit_depth: int = 8) -> bytes:
    """A well-formed PNG declaring ``width`` x ``height`` whose pixel data is a few bytes of
    zlib: a decoder that trusted the header would allocate the whole canvas."""
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, 2, 0, 0, 0])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big") + kind + body
            + zlib.crc32(kind + body).to_bytes(4, "big")
        )  # fmt: skip

    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(1024))) + chunk(b"IEND", b"")
    )  # fmt: skip


@pytest.fixture
def wait_job(client: TestClient) -> Callable[..., dict]:
    """``wait_job(job_id, timeout=120, until=FINISHED)``: the job's body once its status is in
    ``until``."""

    def _wait(job_id: str, timeout: float = 120, until: frozenset = FINISHED) -> dict:
        wanted = "/".join(sorted(until))
        return services.wait_until(
            lambda: client.get(f"/v1/jobs/{job_id}").json(),
            timeout,
            message=lambda body: f"job {job_id} to be {wanted} (still {body['status']})",
            until=lambda body: JobStatus(body["status"]) in until,
        )

    return _wait
