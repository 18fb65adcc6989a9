"""``darkroom serve``, ``darkroom worker``, ``darkroom maintenance`` and ``darkroom cleanup``: the
long-running processes, and the retention pass for cron.

The API and the worker are imported when their command runs, so ``darkroom serve`` (and
``darkroom maintenance``, which imports no model code) never loads torch.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated

import typer

from cli.common import console, fail, load_settings
from shared import logs
from shared.catalogue import CATALOGUE
from shared.config import Settings
from shared.db.engine import session_factory
from shared.jobs.retention import cleanup_once
from shared.storage import make_storage


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from api.app import create_app

    current = load_settings()
    logs.configure(current)
    uvicorn.run(
        create_app(current),
        host=host or current.api_host,
        port=port or current.api_port,
        log_config=None,  # uvicorn's records go through Darkroom's handler (text or JSON)
    )


def cleanup() -> None:
    """Delete results (and API uploads) past DARKROOM_RESULT_RETENTION_DAYS, now.

    Workers do this every DARKROOM_CLEANUP_INTERVAL_S; this is for cron or a one-off.
    """
    current = load_settings()
    if current.result_retention_days <= 0:
        raise fail("DARKROOM_RESULT_RETENTION_DAYS is 0: results are kept forever")
    sessions = session_factory(current.database_url)
    storage = make_storage(current)
    total = 0
    while count := cleanup_once(sessions, storage, current):
        total += count
    console.print(f"expired the results of {total} jobs")


def maintenance(loglevel: str = "INFO") -> None:
    """Look after the jobs while no worker may be running: reap a dead worker's jobs, re-send
    queued jobs the broker lost, send webhooks, finish batches, expire results.

    Workers do all of this too, but only while they run: scaled to zero, none does, and a job
    whose message was lost would wait forever. Run one of these always (it needs no GPU and no
    model); several elect one reaper among them and the workers, as the workers do.
    SIGTERM or Ctrl-C stops it after the pass in hand.
    """
    from workers.maintenance import serve as serve_maintenance

    current = load_settings()
    logs.configure(current, loglevel)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    console.print("maintenance: reaping, reconciling, webhooks and retention (Ctrl-C stops)")
    serve_maintenance(current, stop)


def worker(
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated model families to serve (default: all)."),
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(help="Celery pool (default: solo for one job at a time, else threads)."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs held at once (default: DARKROOM_WORKER_CONCURRENCY)."),
    ] = None,
    loglevel: str = "INFO",
    gpus: Annotated[
        str | None,
        typer.Option(
            help="One worker process per GPU: 'all', or indices or MIG/GPU UUIDs (0,1,...), "
            "each process pinned with CUDA_VISIBLE_DEVICES."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Celery node name (default: celery@<host>).")
    ] = None,
) -> None:
    """Run a worker: a Celery consumer, or in the embedded mode a database poller.

    With concurrency above 1 the worker pipelines: pool threads download, decode, encode and
    upload other jobs while one job is on the model, and it reserves (prefetch) and leaves
    unacknowledged at most that many messages.
    """
    current = load_settings()
    at_once = concurrency or current.worker_concurrency
    pool = pool or ("threads" if at_once > 1 else "solo")
    if pool == "solo" and at_once > 1:
        raise fail(f"the solo pool runs one job at a time, not {at_once}: use --pool threads")
    families = sorted({e.family for e in CATALOGUE.values()})
    chosen = [q.strip() for q in queues.split(",")] if queues else families
    if gpus is not None:
        _worker_per_gpu(current, gpus, chosen, pool, at_once, loglevel)
    elif current.execution == "inline":
        _embedded_worker(current, loglevel)
    else:
        _celery_worker(current, chosen, pool, at_once, loglevel, name)


def _embedded_worker(current: Settings, loglevel: str) -> None:
    from workers.poller import poll_forever

    logs.configure(current, loglevel)
    console.print("embedded worker: running queued jobs from the database (Ctrl-C stops)")
    poll_forever(current)


def _celery_worker(
    current: Settings,
    families: list[str],
    pool: str,
    at_once: int,
    loglevel: str,
    name: str | None,
) -> None:
    from workers import tasks
    from workers.celery_app import app as celery_app

    # The pool's size is the concurrency the worker's context reads (it merges passes across
    # jobs only when it holds several), also when it came from --concurrency.
    tasks.use_settings(current.model_copy(update={"worker_concurrency": at_once}))
    celery_app.worker_main(
        [
            "worker",
            f"--pool={pool}",
            f"--concurrency={at_once}",
            f"--queues={','.join(current.queue_for(f) for f in families)}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            *([f"--hostname={name}"] if name else []),
        ]
    )


def _worker_per_gpu(
    current: Settings, spec: str, families: list[str], pool: str, at_once: int, loglevel: str
) -> None:
    """Supervise one ``darkroom worker`` per GPU (``workers.supervisor``); exits with its code."""
    from workers.supervisor import resolve_gpus, run_per_gpu

    logs.configure(current, loglevel)
    try:
        gpus = resolve_gpus(spec)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    command = [sys.executable, "-m", "cli", "worker", "--queues", ",".join(families)]
    command += ["--pool", pool, "--concurrency", str(at_once), "--loglevel", loglevel]
    console.print(f"one worker per GPU: {', '.join(gpus)} (Ctrl-C stops them all)")
    raise typer.Exit(code=run_per_gpu(gpus, command, metrics_port=current.worker_metrics_port))
