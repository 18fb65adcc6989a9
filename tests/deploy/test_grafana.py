"""deploy/grafana/darkroom.json: every metric a panel queries is one Darkroom serves."""

from __future__ import annotations

import json
import re

from tests.deploy.compose import ROOT
from workers import metrics as worker_metrics

DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "darkroom.json").read_text())
SUFFIXES = ("_bucket", "_count", "_sum", "_total")
_GAUGE = re.compile(r'GaugeMetricFamily\(\s*"(darkroom_[a-z_]+)"')


def served() -> set[str]:
    """The metric families the API's /metrics and a worker's serve: the gauges their
    collectors build at scrape time, and the worker's counters and histograms."""
    names = set()
    for source in (ROOT / "api" / "metrics.py", ROOT / "workers" / "metrics.py"):
        names |= set(_GAUGE.findall(source.read_text()))
    for collector in (
        worker_metrics.STAGE_SECONDS,
        worker_metrics.JOBS,
        worker_metrics.FAILURES,
        worker_metrics.MODEL_LOAD_SECONDS,
        worker_metrics.RESTORE_MEGAPIXELS,
        worker_metrics.RESTORE_SPEED,
    ):
        names |= {family.name for family in collector.describe()}
    return names


def family(sample: str, known: set[str]) -> str:
    """The family a sample name in a query belongs to (``x_bucket`` -> ``x``)."""
    for suffix in SUFFIXES:
        if sample.endswith(suffix) and sample.removesuffix(suffix) in known:
            return sample.removesuffix(suffix)
    return sample


def queried(known: set[str]) -> set[str]:
    exprs = [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]
    return {family(name, known) for e in exprs for name in re.findall(r"\bdarkroom_[a-z_]+", e)}


def test_every_queried_metric_is_served() -> None:
    known = served()
    assert {"darkroom_jobs", "darkroom_worker_gpu_memory_bytes"} <= known  # the parse works
    assert queried(known) - known == set()


def test_the_dashboard_shows_the_api_and_the_workers() -> None:
    names = queried(served())
    assert {"darkroom_jobs", "darkroom_queue_messages", "darkroom_webhook_deliveries"} <= names
    assert {"darkroom_worker_stage_seconds", "darkroom_worker_jobs"} <= names
    assert all(p["datasource"]["uid"] == "${datasource}" for p in DASHBOARD["panels"])
    assert len({p["id"] for p in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])
