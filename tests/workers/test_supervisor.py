"""``darkroom worker --gpus``: one real Celery worker process per GPU, each seeing only its GPU
through ``CUDA_VISIBLE_DEVICES`` and named after it, stopped together.

No GPU is needed: the variable is only an environment string to the child processes, read
back from ``/proc`` here, and the workers run on the CPU (``DARKROOM_DEVICE=cpu``)."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from shared.queue import make_celery
from tests import services
from tests.conftest import settings_from_env
from workers.supervisor import node_name, resolve_gpus

GPUS = ["0", "MIG-4f1c"]
"""An index and a MIG-style UUID: both are passed through untouched."""


def test_gpu_lists_are_parsed_and_checked() -> None:
    assert resolve_gpus(" 0, 1 ,MIG-ab/3 ") == ["0", "1", "MIG-ab/3"]
    with pytest.raises(ValueError, match="twice"):
        resolve_gpus("0,1,0")
    with pytest.raises(ValueError, match="indices"):
        resolve_gpus(" , ")
    assert node_name("MIG-ab/3") == "gpuMIG-ab-3@%h"


def test_all_means_the_gpus_this_process_was_given() -> None:
    """A scheduler that gave the job GPUs 2 and 3 (or UUIDs, or MIG slices) must get workers
    on those, not on 0 and 1."""
    assert resolve_gpus("all", {"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    given = "GPU-8e1d2c,MIG-4f1c/1/0"
    assert resolve_gpus("all", {"CUDA_VISIBLE_DEVICES": given}) == given.split(",")
    with pytest.raises(ValueError, match="hides every GPU"):
        resolve_gpus("all", {"CUDA_VISIBLE_DEVICES": ""})


NVIDIA_SMI_L = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5c2a)
  MIG 3g.20gb     Device  0: (UUID: MIG-aaaa-1111)
  MIG 3g.20gb     Device  1: (UUID: MIG-bbbb-2222)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-77e0)
"""


def test_without_the_variable_every_mig_slice_is_a_device_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'EOF'\n{NVIDIA_SMI_L}EOF\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert resolve_gpus("all", {}) == ["MIG-aaaa-1111", "MIG-bbbb-2222", "1"]


def test_without_nvidia_smi_all_falls_back_to_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    if torch.cuda.device_count() == 0:
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_gpus("all", {})
    else:
        assert resolve_gpus("all", {}) == [str(i) for i in range(torch.cuda.device_count())]


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    while True:
        first = services.free_port()
        if all(not services.port_open(first + i) for i in range(count)):
            return first


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie has exited


@pytest.fixture
def per_gpu(
    service_env: dict[str, str], s3: object, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    """A supervisor running one worker per entry of ``GPUS``; yields it and {gpu: worker pid}
    once every worker answers."""
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-gpus-{uuid.uuid4().hex[:6]}",
        "DARKROOM_WORKER_METRICS_PORT": str(_free_ports(len(GPUS))),
    }
    log = tmp_path / "supervisor.log"
    proc = subprocess.Popen(
        [str(services.BIN / "darkroom"), "worker", "--gpus", ",".join(GPUS), "--queues", "mirnet"],
        env={**os.environ, **env},
        cwd=services.REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    app = make_celery(settings_from_env(env))
    pids: dict[str, int] = {}

    def answered() -> dict[str, int]:
        assert proc.poll() is None, f"supervisor exited:\n{log.read_text()[-3000:]}"
        stats = app.control.inspect(timeout=1.0).stats() or {}
        for gpu in GPUS:
            name = node_name(gpu).replace("%h", "")
            for node, info in stats.items():
                if node.startswith(name):
                    pids[gpu] = int(info["pid"])
        return pids

    try:
        services.wait_until(
            answered,
            120,
            message=lambda found: (
                f"a worker per GPU to answer ({sorted(found)} did):\n{log.read_text()[-3000:]}"
            ),
            until=lambda found: len(found) == len(GPUS),
        )
        yield proc, pids
    finally:
        services.stop(proc, timeout=60)
        app.close()


def test_each_worker_sees_only_its_gpu_and_all_stop_together(
    per_gpu: tuple[subprocess.Popen[bytes], dict[str, int]],
) -> None:
    supervisor, pids = per_gpu
    assert len(set(pids.values())) == len(GPUS)
    ports = set()
    for gpu, pid in pids.items():
        assert _environ(pid)["CUDA_VISIBLE_DEVICES"] == gpu
        assert _environ(pid)["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        port = int(_environ(pid)["DARKROOM_WORKER_METRICS_PORT"])
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert metrics.status_code == 200 and "darkroom_worker_stage_seconds" in metrics.text
        ports.add(port)
    assert len(ports) == len(GPUS)  # each child its own port

    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0  # warm shutdown of every worker
    assert not any(_alive(pid) for pid in pids.values())


def test_a_dead_worker_stops_the_node_with_an_error(
    per_gpu: tuple[subprocess.Popen[bytes], dict[str, int]],
) -> None:
    supervisor, pids = per_gpu
    os.kill(pids[GPUS[0]], signal.SIGKILL)  # out of memory, a driver fault, ...
    assert supervisor.wait(60) != 0  # so systemd or the orchestrator restarts the node
    assert not _alive(pids[GPUS[1]])  # not left behind serving with a GPU missing
