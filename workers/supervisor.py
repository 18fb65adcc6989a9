"""One worker process per GPU on a multi-GPU node, each pinned with ``CUDA_VISIBLE_DEVICES``.

A worker process drives one device (``WorkerContext.device_lock``), so a node with eight GPUs needs
eight processes. Celery's own ``celery multi`` starts several nodes but cannot give each its own
environment, and a process that sees every GPU would put all its models on ``cuda:0``. The
supervisor here starts the children as fresh processes (never forked: the parent may have
initialised CUDA to count the GPUs), names each Celery node after its GPU so Flower and
``celery inspect`` tell them apart, forwards SIGTERM/SIGINT so every child finishes its jobs
(warm shutdown), and, when one child dies, stops the others and exits with an error: the node
then restarts as a whole under systemd, Kubernetes or compose, instead of limping on with a GPU
silently idle.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from types import FrameType

log = logging.getLogger(__name__)

STOP_GRACE_S = 600.0
"""How long children may take to finish their jobs after a stop before they are killed; a
12-MP photo on a slow model takes minutes on a small GPU."""


def resolve_gpus(spec: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """``all``, or comma-separated indices or MIG/GPU UUIDs, which ``CUDA_VISIBLE_DEVICES``
    accepts as they are (one MIG slice per process).

    ``all`` means the GPUs this process was given: a scheduler (Slurm, Kubernetes, a shared
    node's ``CUDA_VISIBLE_DEVICES=2,3``) hands a job its devices in that variable, and numbering
    inside it would start children on GPUs 0 and 1, someone else's. Without the variable, every
    device ``nvidia-smi -L`` lists, with each MIG slice as a device of its own (torch would count
    a GPU split into slices as one); without nvidia-smi, torch's count.
    """
    environ = os.environ if environ is None else environ
    if spec.strip().lower() == "all":
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            gpus = [part.strip() for part in visible.split(",") if part.strip()]
            if not gpus or gpus == ["-1"]:
                raise ValueError("--gpus all: CUDA_VISIBLE_DEVICES hides every GPU")
            return _distinct(gpus)
        listed = listed_devices()
        if listed:
            return listed
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError("--gpus all: no CUDA device is visible to this process")
        return [str(index) for index in range(count)]
    gpus = [part.strip() for part in spec.split(",") if part.strip()]
    if not gpus:
        raise ValueError(f"--gpus {spec!r}: give GPU indices or UUIDs, e.g. 0,1 or all")
    return _distinct(gpus)


def _distinct(gpus: list[str]) -> list[str]:
    duplicates = sorted({gpu for gpu in gpus if gpus.count(gpu) > 1})
    if duplicates:
        raise ValueError(f"--gpus lists {', '.join(duplicates)} twice: one process per GPU")
    return gpus


_GPU_LINE = re.compile(r"^GPU (\d+): ")
_MIG_LINE = re.compile(r"^\s+MIG .*\(UUID: (MIG-[^)\s]+)\)")


def listed_devices() -> list[str]:
    """The devices ``nvidia-smi -L`` lists: a GPU's index, or the UUIDs of its MIG slices when
    it is split; empty without nvidia-smi."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    devices: list[str] = []
    slices: dict[str, list[str]] = {}
    current: str | None = None
    for line in listing.splitlines():
        if gpu := _GPU_LINE.match(line):
            current = gpu.group(1)
            devices.append(current)
            slices[current] = []
        elif (mig := _MIG_LINE.match(line)) and current is not None:
            slices[current].append(mig.group(1))
    return [device for gpu in devices for device in (slices[gpu] or [gpu])]


def node_name(gpu: str) -> str:
    """Celery node name of the worker pinned to ``gpu``; a MIG UUID keeps only safe characters."""
    safe = "".join(c if c.isalnum() or c == "-" else "-" for c in gpu)
    return f"gpu{safe}@%h"


def run_per_gpu(
    gpus: Sequence[str],
    command: Sequence[str],
    *,
    stop_grace_s: float = STOP_GRACE_S,
    poll_s: float = 0.5,
    metrics_port: int = 0,
) -> int:
    """Run ``command + ["--name", node_name(gpu)]`` once per GPU with only that GPU visible,
    until a stop signal or the first child's exit; with ``metrics_port``, the i-th child serves
    its metrics on that port plus i. Returns the exit code for the supervisor:
    0 after a requested stop that every child honoured, else the first failing child's code
    (or 1)."""
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index, gpu in enumerate(gpus):
            # PCI bus order: the order nvidia-smi and schedulers number GPUs in (CUDA's own
            # default puts the fastest first, so an index would name another GPU).
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
            if metrics_port:  # each child its own port for its own metrics
                env["DARKROOM_WORKER_METRICS_PORT"] = str(metrics_port + index)
            # A session of its own: a terminal's Ctrl-C reaches only the supervisor, which passes
            # it on once (a second SIGINT would make Celery abandon its running jobs).
            children[gpu] = subprocess.Popen(
                [*command, "--name", node_name(gpu)], env=env, start_new_session=True
            )
            log.info("worker %s on GPU %s: pid %d", node_name(gpu), gpu, children[gpu].pid)
        while not stopping and all(child.poll() is None for child in children.values()):
            time.sleep(poll_s)
        failed = [
            (gpu, child.returncode)
            for gpu, child in children.items()
            if child.returncode is not None and (child.returncode != 0 or not stopping)
        ]
        if not stopping:
            gpu, code = failed[0]
            log.error("worker for GPU %s exited with %s; stopping the others", gpu, code)
            request_stop(signal.SIGTERM, None)
        _wait_all(children, stop_grace_s)
        if failed:
            return failed[0][1] or 1
        return 0 if all(child.returncode == 0 for child in children.values()) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_all(children: dict[str, subprocess.Popen[bytes]], grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    for gpu, child in children.items():
        try:
            child.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            log.error("worker for GPU %s did not stop within %.0fs; killing it", gpu, grace_s)
            child.kill()
            child.wait()
