"""Starting and reaching the real services the tests use.

Redis and PostgreSQL run on the developer and CI machines; ``scripts/test.sh`` starts them when
they are down. The S3 endpoint (a ``moto_server`` process) and the Celery worker are started
here, once per test session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, make_url, text

from tests import s3_auth
from tests.s3_auth import S3Endpoint

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get(
    "DARKROOM_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
"""The machine's PostgreSQL, as its superuser: each session's database is made (and dropped)
on the same server."""
REDIS_URL = os.environ.get("DARKROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379")
"""The machine's Redis, without a database number (the session picks one)."""


def darkroom_env(
    home: Path, database_url: str, broker_url: str, s3: S3Endpoint, queue_prefix: str
) -> dict[str, str]:
    """The settings that point Darkroom, and the workers started with them, at one set of real
    services: a database, a broker under a fresh queue prefix, the S3 endpoint with fresh
    buckets (create them with :func:`s3_client`)."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "DARKROOM_HOME": str(home),
        "DARKROOM_DATABASE_URL": database_url,
        "DARKROOM_EXECUTION": "celery",
        "DARKROOM_BROKER_URL": broker_url,
        "DARKROOM_QUEUE_PREFIX": f"{queue_prefix}-{suffix}",
        "DARKROOM_STORAGE_BACKEND": "s3",
        "DARKROOM_S3_ENDPOINT_URL": s3.url,
        # Presigned URLs are made for the proxy that checks their signatures (tests.s3_auth).
        "DARKROOM_S3_PUBLIC_ENDPOINT_URL": s3.public_url,
        "DARKROOM_S3_ACCESS_KEY_ID": s3.key,
        "DARKROOM_S3_SECRET_ACCESS_KEY": s3.secret,
        "DARKROOM_INPUT_BUCKET": f"in-{suffix}",
        "DARKROOM_OUTPUT_BUCKET": f"out-{suffix}",
    }


def s3_client(s3: S3Endpoint, buckets: Sequence[str] = ()):  # type: ignore[no-untyped-def]
    """A boto3 client on moto with the test key, after creating ``buckets``."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3.url,
        region_name="us-east-1",
        aws_access_key_id=s3.key,
        aws_secret_access_key=s3.secret,
    )
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return client


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL, dropped (connections and all) on
    exit: each test session, migration test and benchmark gets its own."""
    from shared.db.engine import session_factory

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        session_factory(url).kw["bind"].dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    message: str | Callable[[T], str] = "the condition",
    *,
    until: Callable[[T], object] = bool,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until ``until`` holds for what it returned
    (by default: until it returns something truthy), and return that value.

    The one wait of the suite. After ``timeout`` seconds it raises ``TimeoutError``: "timed out
    after 30s waiting for <message>; last value: <repr>". ``message`` may instead be a function
    of the last value, for details known only then (a job's status, a log's tail). Exceptions
    from ``predicate`` are not retried: they end the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if callable(message):
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {message(value)}")
    last = repr(value)
    if len(last) > 2000:
        last = last[:2000] + "..."
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {message}; last value: {last}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], S3Endpoint]:
    """``moto_server`` checking every request's signature, an IAM key allowed to use S3, and
    the proxy that checks presigned URLs (see :mod:`tests.s3_auth`). Close the endpoint and
    stop the process when done."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(s3_auth.UNAUTHENTICATED_CALLS)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: port_open(port), 30, message="moto_server to listen")
    url = f"http://127.0.0.1:{port}"
    key, secret = s3_auth.grant_access(url)
    return proc, S3Endpoint(url, key, secret, s3_auth.PresignProxy(url, key, secret))


def start_redis(port: int, log: Path) -> subprocess.Popen[bytes]:
    """A private ``redis-server`` that keeps nothing on disk, so a restart loses every message,
    as a Redis without persistence (or a failed-over one) does in production."""
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(log.parent),
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_until(
        lambda: port_open(port) or proc.poll() is not None, 30, message="redis-server to listen"
    )
    if proc.poll() is not None:
        raise RuntimeError(f"redis-server exited:\n{log.read_text()[-2000:]}")
    return proc


def start_worker(
    env: dict[str, str],
    log: Path,
    queues: str = "darkroom,mirnet,spandrel,ipt",
    timeout: float = 90,
    pool: str = "solo",
    concurrency: int = 1,
) -> subprocess.Popen[bytes]:
    """A real Celery worker process, through the same CLI operators use."""
    proc = subprocess.Popen(
        [
            str(BIN / "darkroom"),
            "worker",
            "--queues",
            queues,
            "--loglevel",
            "INFO",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
        ],  # fmt: skip
        env={**os.environ, **env},
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_until(
        lambda: b"ready." in log.read_bytes() or proc.poll() is not None,
        timeout,
        message=lambda _: f"the celery worker to be ready:\n{log.read_text()[-3000:]}",
    )
    if proc.poll() is not None:
        raise RuntimeError(f"celery worker exited:\n{log.read_text()[-3000:]}")
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
