"""``GET /metrics``: what operators scale workers on, in Prometheus's text format.

Values are read when Prometheus scrapes (a custom collector), not counted in this process, so
every API replica reports the same truth: jobs per status from the database, messages waiting
per model-family queue from Redis, and webhook deliveries per state. Only totals: nothing here
names a tenant or a job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import jobs, webhooks
from shared.catalogue import CATALOGUE
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import JobStatus
from shared.queue import queue_depths

log = logging.getLogger(__name__)


class DarkroomCollector(Collector):
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        per_status = GaugeMetricFamily("darkroom_jobs", "Jobs in each status.", labels=["status"])
        hooks = GaugeMetricFamily(
            "darkroom_webhook_deliveries", "Webhook events in each state.", labels=["status"]
        )
        with session_factory(self._settings.database_url)() as session:
            counts = jobs.status_counts(session)
            deliveries = webhooks.delivery_counts(session)
        for status in JobStatus:
            per_status.add_metric([status.value], counts.get(status, 0))
        for state in ("pending", "delivered", "failed"):
            hooks.add_metric([state], deliveries.get(state, 0))
        yield per_status
        yield hooks
        if self._settings.execution != "celery":
            return
        families = sorted({entry.family for entry in CATALOGUE.values()})
        queues = {self._settings.queue_for(family): family for family in families}
        try:
            depths = queue_depths(self._settings.broker_url, queues)
        except OSError as exc:  # redis' ConnectionError is an OSError: report what we have
            log.warning("broker unreachable for metrics: %s", exc)
            return
        if depths is not None:
            waiting = GaugeMetricFamily(
                "darkroom_queue_messages",
                "Messages waiting in each model family's queue (not counting reserved ones).",
                labels=["family", "queue"],
            )
            for queue, depth in depths.items():
                waiting.add_metric([queues[queue], queue], depth)
            yield waiting


def metrics_registry(settings: Settings) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DarkroomCollector(settings))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
