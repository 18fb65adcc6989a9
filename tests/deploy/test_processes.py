"""The small always-on pods, Flower and ``darkroom maintenance``: each is started here exactly as
its Deployment's command says (docker-compose.yml's Flower too), against the real broker and
database, and once it is up it must stay well under the pod's memory limit and never have loaded
torch. A process that imports the model code is over 600 MiB resident before it does anything,
and a pod over its limit is killed and restarted forever."""

from __future__ import annotations

import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

from shared.db.locks import lock_key
from tests import services
from tests.deploy.compose import command_of, subcommand_of
from tests.deploy.test_k8s import objects

UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def _bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("512Mi") in bytes."""
    for unit in sorted(UNITS, key=len, reverse=True):
        if quantity.endswith(unit):
            return int(float(quantity.removesuffix(unit)) * UNITS[unit])
    return int(quantity)


def _container(name: str) -> dict:  # type: ignore[type-arg]
    deployment = objects("small", "Deployment")[name]
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"process {pid} reports no resident memory")


def _mapped_torch(pid: int) -> list[str]:
    """Files of torch's package the process has mapped (its shared libraries, once imported)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in maps if "/torch/" in line})


@contextmanager
def _running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [str(services.BIN / argv[0]), *argv[1:]],
        env={**os.environ, **env},
        cwd=services.REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        services.stop(proc)


def _check_small(proc: subprocess.Popen[bytes], container: dict, log: Path) -> None:  # type: ignore[type-arg]
    assert proc.poll() is None, log.read_text()[-3000:]
    limit = _bytes(container["resources"]["limits"]["memory"])
    resident = _resident_bytes(proc.pid)
    assert resident < limit / 2, (
        f"{resident / 2**20:.0f} MiB resident, limit {limit / 2**20:.0f} MiB"
    )
    assert _mapped_torch(proc.pid) == []


def test_flower_runs_well_within_its_pods_memory_limit(redis_url: str, tmp_path: Path) -> None:
    container = _container("darkroom-flower")
    argv = container["command"]
    assert argv == command_of("flower")  # docker-compose runs the same app
    port = services.free_port()
    argv = [a for a in argv if not a.startswith("--port")]
    argv += [f"--port={port}", "--address=127.0.0.1"]
    env = {"DARKROOM_BROKER_URL": redis_url}
    log = tmp_path / "flower.log"
    probe = container["readinessProbe"]["httpGet"]["path"]

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    with _running(argv, env, log) as proc:
        services.wait_until(
            lambda: answers() or proc.poll() is not None,
            90,
            message=lambda _: f"flower to answer {probe}:\n{log.read_text()[-3000:]}",
        )
        _check_small(proc, container, log)


def _lock_holders(database_url: str, name: str) -> int:
    """Sessions holding the advisory lock ``name`` (PostgreSQL splits its key in two halves)."""
    key = lock_key(name) & (2**64 - 1)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND objsubid = 1 AND classid = CAST(:high AS bigint)::oid"
                        " AND objid = CAST(:low AS bigint)::oid"
                    ),
                    {"high": key >> 32, "low": key & 0xFFFFFFFF},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_maintenance_runs_well_within_its_pods_memory_limit(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    container = _container("darkroom-maintenance")
    argv = container["command"]
    assert argv[0] == "darkroom" and subcommand_of(argv) == ["maintenance"]
    prefix = f"darkroom-upkeep-{uuid.uuid4().hex[:6]}"
    env = {**service_env, "DARKROOM_QUEUE_PREFIX": prefix, "DARKROOM_MAINTENANCE_INTERVAL_S": "0.5"}
    database_url = service_env["DARKROOM_DATABASE_URL"]
    log = tmp_path / "maintenance.log"
    with _running(argv, env, log) as proc:
        # Elected (nobody else has this queue prefix): it is connected and in its loop.
        services.wait_until(
            lambda: (
                _lock_holders(database_url, f"darkroom-maintenance:{prefix}") == 1
                or proc.poll() is not None
            ),
            60,
            message=lambda _: f"darkroom maintenance to be elected:\n{log.read_text()[-3000:]}",
        )
        _check_small(proc, container, log)
