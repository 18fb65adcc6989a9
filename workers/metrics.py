"""What a worker process tells Prometheus: its stages' latency, the jobs it finished, its
retries, how long its models took to load, how fast it restores, and its GPU.

Each ``darkroom worker`` process serves them on ``DARKROOM_WORKER_METRICS_PORT`` (the ``--gpus``
supervisor gives its i-th child that port plus i). The API's ``/metrics`` says what the
database and the queues hold; these say what one worker does, so a slow node or a model that
fails more than the others shows up as itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.catalogue import ModelEntry
from shared.config import Settings

log = logging.getLogger(__name__)

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

STAGE_SECONDS = Histogram(
    "darkroom_worker_stage_seconds",
    "Seconds each stage of a job took on this worker (measure overlaps encode).",
    ["stage", "model"],
    buckets=_SECONDS,
)
JOBS = Counter(
    "darkroom_worker_jobs_total",
    "Jobs this worker finished or handed back, by model and outcome (succeeded, failed, "
    "cancelled, retried).",
    ["model", "outcome"],
)
FAILURES = Counter(
    "darkroom_worker_failures_total",
    "Failed attempts by error code: final failures and retried ones alike.",
    ["model", "code"],
)
MEASURE_FAILURES = Counter(
    "darkroom_worker_measure_failures_total",
    "Succeeded jobs whose quality signals or previews could not be made or stored (the "
    "restoration is kept; the job records measure_error), by model and exception type.",
    ["model", "error"],
)
MODEL_LOAD_SECONDS = Histogram(
    "darkroom_worker_model_load_seconds",
    "Seconds to load a model (weights read, built, moved to the device, warmed up).",
    ["model"],
    buckets=_SECONDS,
)
RESTORE_MEGAPIXELS = Counter(
    "darkroom_worker_restored_megapixels_total",
    "Megapixels of input restored; its rate over time is the worker's throughput.",
    ["model"],
)
RESTORE_SPEED = Histogram(
    "darkroom_worker_restore_megapixels_per_second",
    "Each job's megapixels over its restore stage's seconds.",
    ["model"],
    buckets=(0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300),
)


def model_loaded(entry: ModelEntry, seconds: float) -> None:
    """The restorer cache's load hook: the engine times, the runtime records."""
    MODEL_LOAD_SECONDS.labels(entry.name).observe(seconds)


def job_finished(
    model: str,
    outcome: str,
    timings: Mapping[str, float],
    *,
    megapixels: float | None = None,
    code: str | None = None,
) -> None:
    """Record one job's attempt: its outcome, its stages' seconds, its restore speed."""
    JOBS.labels(model, outcome).inc()
    if code is not None:
        FAILURES.labels(model, code).inc()
    for stage, seconds in timings.items():
        if stage != "device":
            STAGE_SECONDS.labels(stage, model).observe(seconds)
    restore = timings.get("restore")
    if outcome == "succeeded" and megapixels and restore:
        RESTORE_MEGAPIXELS.labels(model).inc(megapixels)
        RESTORE_SPEED.labels(model).observe(megapixels / restore)


class GpuCollector(Collector):
    """The GPU's memory and utilisation, read when Prometheus scrapes: torch's allocator for
    what this process holds, NVML (``nvidia-ml-py``, optional) for the device as a whole."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import torch

        if not torch.cuda.is_available():
            return
        held = GaugeMetricFamily(
            "darkroom_worker_gpu_memory_bytes",
            "GPU memory this process's tensors use (allocated) and its allocator keeps (reserved).",
            labels=["device", "kind"],
        )
        for index in range(torch.cuda.device_count()):
            held.add_metric([str(index), "allocated"], torch.cuda.memory_allocated(index))
            held.add_metric([str(index), "reserved"], torch.cuda.memory_reserved(index))
        yield held
        yield from _nvml()


def _nvml() -> Iterator[GaugeMetricFamily]:
    try:
        import pynvml  # from nvidia-ml-py
    except ImportError:
        return
    try:
        pynvml.nvmlInit()
        used = GaugeMetricFamily(
            "darkroom_worker_gpu_device_memory_used_bytes",
            "GPU memory in use on the device, every process included (NVML).",
            labels=["device"],
        )
        busy = GaugeMetricFamily(
            "darkroom_worker_gpu_utilisation_ratio",
            "Share of the last sample period the GPU was running a kernel (NVML).",
            labels=["device"],
        )
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            used.add_metric([str(index)], pynvml.nvmlDeviceGetMemoryInfo(handle).used)
            busy.add_metric([str(index)], pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100)
        yield used
        yield busy
    except pynvml.NVMLError as exc:
        log.debug("NVML unavailable: %s", exc)


_serving = False


def serve(settings: Settings) -> int | None:
    """Serve this process's metrics on ``worker_metrics_port`` (0: not at all); returns the
    port, or None. A port already taken (two workers on one host with the same setting) is
    logged and skipped: a worker without metrics still restores photos."""
    global _serving
    port = settings.worker_metrics_port
    if port <= 0 or _serving:
        return None
    try:
        start_http_server(port, addr=settings.worker_metrics_host)
    except OSError as exc:
        log.warning("worker metrics not served: port %d: %s", port, exc)
        return None
    REGISTRY.register(GpuCollector())
    _serving = True
    log.info("worker metrics on http://%s:%d/metrics", settings.worker_metrics_host, port)
    return port
