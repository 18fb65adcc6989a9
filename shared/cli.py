"""``darkroom``: run the API or a worker, submit photos, follow jobs, manage the database.

With no configuration everything is embedded (SQLite, a local object folder, jobs run in this
process), so ``darkroom submit photos/ --wait --out restored/`` works on a fresh machine.
Commands import the API or the worker lazily: ``darkroom serve`` never loads torch.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from shared import jobs, service
from shared.catalogue import CATALOGUE, DEFAULT_MODEL
from shared.cli_models import app as models_app
from shared.cli_tenants import keys_app, tenants_app
from shared.db import session_factory
from shared.errors import DarkroomError, JobNotFound
from shared.model_store import ModelStore
from shared.models import FINISHED, Job, JobStatus
from shared.settings import Settings, get_settings
from shared.storage import Storage, make_storage

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic"}


def _settings() -> Settings:
    from shared.migrate import upgrade_embedded

    settings = get_settings()
    upgrade_embedded(settings.database_url)
    return settings


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to DARKROOM_DATABASE_URL."""
    from shared.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    console.print(f"database at {_redact(settings.database_url)} is at revision {revision}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from api.app import create_app
    from shared import logs

    settings = _settings()
    logs.configure(settings)
    uvicorn.run(
        create_app(settings),
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_config=None,  # uvicorn's records go through Darkroom's handler (text or JSON)
    )


@app.command()
def cleanup() -> None:
    """Delete results (and API uploads) past DARKROOM_RESULT_RETENTION_DAYS, now.

    Workers do this every DARKROOM_CLEANUP_INTERVAL_S; this is for cron or a one-off.
    """
    from shared.retention import cleanup_once

    settings = _settings()
    if settings.result_retention_days <= 0:
        raise _fail("DARKROOM_RESULT_RETENTION_DAYS is 0: results are kept forever")
    sessions = session_factory(settings.database_url)
    storage = make_storage(settings)
    total = 0
    while count := cleanup_once(sessions, storage, settings):
        total += count
    console.print(f"expired the results of {total} jobs")


@app.command()
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
    settings = _settings()
    at_once = concurrency or settings.worker_concurrency
    pool = pool or ("threads" if at_once > 1 else "solo")
    if pool == "solo" and at_once > 1:
        raise _fail(f"the solo pool runs one job at a time, not {at_once}: use --pool threads")
    families = sorted({e.family for e in CATALOGUE.values()})
    chosen = [q.strip() for q in queues.split(",")] if queues else families
    if gpus is not None:
        _worker_per_gpu(settings, gpus, chosen, pool, at_once, loglevel)
        return
    if settings.execution == "inline":
        from shared import logs
        from workers.poller import poll_forever

        logs.configure(settings, loglevel)
        console.print("embedded worker: running queued jobs from the database (Ctrl-C stops)")
        poll_forever(settings)
        return
    from workers.celery_app import app as celery_app

    # The pool's size is the concurrency the worker's context reads (it merges passes across
    # jobs only when it holds several), also when it came from --concurrency.
    os.environ["DARKROOM_WORKER_CONCURRENCY"] = str(at_once)
    get_settings.cache_clear()
    celery_app.worker_main(
        [
            "worker",
            f"--pool={pool}",
            f"--concurrency={at_once}",
            f"--queues={','.join(settings.queue_for(f) for f in chosen)}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            *([f"--hostname={name}"] if name else []),
        ]
    )


def _worker_per_gpu(
    settings: Settings, spec: str, families: list[str], pool: str, at_once: int, loglevel: str
) -> None:
    """Supervise one ``darkroom worker`` per GPU (see ``workers.gpus``); exits with its code."""
    import sys

    from shared import logs
    from workers.gpus import resolve_gpus, run_per_gpu

    logs.configure(settings, loglevel)
    try:
        gpus = resolve_gpus(spec)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    command = [sys.executable, "-m", "shared.cli", "worker", "--queues", ",".join(families)]
    command += ["--pool", pool, "--concurrency", str(at_once), "--loglevel", loglevel]
    console.print(f"one worker per GPU: {', '.join(gpus)} (Ctrl-C stops them all)")
    raise typer.Exit(code=run_per_gpu(gpus, command))


def _collect(paths: list[str]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Split arguments into local image files (with the relative name results keep) and
    object-store prefixes."""
    files: list[tuple[Path, str]] = []
    prefixes: list[str] = []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            files.extend(
                (p, p.relative_to(path).as_posix())
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif path.is_file():
            files.append((path, path.name))
        else:
            prefixes.append(arg)
    return files, prefixes


def _upload(storage: Storage, settings: Settings, files: list[tuple[Path, str]]) -> str:
    """Upload under one fresh prefix, keeping folder structure; returns the prefix."""
    storage.ensure_bucket(settings.input_bucket)
    root = f"uploads/{uuid.uuid4().hex[:12]}/"
    with rich_progress("uploading") as progress:
        for path, name in progress.track(files):
            safe = "/".join(service.safe_filename(part) for part in name.split("/"))
            storage.put(settings.input_bucket, root + safe, path.read_bytes())
    return root


@app.command()
def submit(
    paths: Annotated[
        list[str], typer.Argument(help="Local files or folders, or object-key prefixes.")
    ],
    model: Annotated[str, typer.Option(help="Model name (see `darkroom models`).")] = DEFAULT_MODEL,
    wait: Annotated[bool, typer.Option(help="Wait for every job to finish.")] = False,
    out: Annotated[Path | None, typer.Option(help="Download results into this folder.")] = None,
    jpeg_quality: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    task: Annotated[str | None, typer.Option(help="Task of a multi-task model.")] = None,
) -> None:
    """Restore photos: one batch over every image given."""
    settings = _settings()
    storage = make_storage(settings)
    storage.ensure_bucket(settings.output_bucket)
    files, prefixes = _collect(paths)
    if not files and not prefixes:
        raise _fail("no images found in the paths given")
    options: dict[str, object] = {"jpeg_quality": jpeg_quality} if jpeg_quality else {}
    if task:
        options["task"] = task
    dispatcher = service.make_dispatcher(settings)
    models = ModelStore(settings, storage)
    sessions = session_factory(settings.database_url)
    roots: dict[uuid.UUID, str] = {}
    try:
        if files:
            prefixes.insert(0, _upload(storage, settings, files))
        with sessions() as session:
            for prefix in prefixes:
                batch = service.submit_batch(
                    session,
                    settings,
                    dispatcher,
                    storage,
                    models,
                    model=model,
                    prefix=prefix,
                    options=options,
                )
                roots[batch.id] = prefix
    except DarkroomError as exc:
        raise _fail(exc.message) from exc
    batch_ids = list(roots)
    for batch_id in batch_ids:
        console.print(f"batch [bold]{batch_id}[/bold] submitted")
    inline = settings.execution == "inline"
    if not (wait or out or inline):
        return
    job_list = _batch_jobs(settings, batch_ids)
    if inline:
        _run_inline(settings, job_list)
    else:
        _wait(settings, job_list)
    _report(settings, storage, roots, out)


def _batch_jobs(settings: Settings, batch_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    from sqlalchemy import select

    with session_factory(settings.database_url)() as session:
        return list(
            session.scalars(
                select(Job.id).where(Job.batch_id.in_(batch_ids)).order_by(Job.created_at)
            )
        )


def rich_progress(label: str, *, count_failed: bool = False) -> Progress:
    failed = [TextColumn("{task.fields[failed]} failed")] if count_failed else []
    return Progress(
        TextColumn(f"[bold]{label}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        *failed,
        TimeRemainingColumn(),
        console=console,
    )


def _run_inline(settings: Settings, job_ids: list[uuid.UUID]) -> None:
    from workers import maintenance
    from workers.pipeline import WorkerContext, run_inline

    # Per-job failures are summarised after the progress bar; keep only real trouble here.
    logging.getLogger("workers").setLevel(logging.ERROR)
    ctx = WorkerContext.build(settings)
    maintenance.start(ctx, service.NoDispatch())  # heartbeats, so a poller never reaps ours
    failed = 0
    with rich_progress("restoring", count_failed=True) as progress:
        task = progress.add_task("jobs", total=len(job_ids), failed=0)
        for job_id in job_ids:
            if run_inline(job_id, ctx) == JobStatus.failed:
                failed += 1
            progress.update(task, advance=1, failed=failed)


def _wait(settings: Settings, job_ids: list[uuid.UUID]) -> None:
    from sqlalchemy import func, select

    sessions = session_factory(settings.database_url)
    with rich_progress("restoring", count_failed=True) as progress:
        task = progress.add_task("jobs", total=len(job_ids), failed=0)
        while True:
            with sessions() as session:
                rows = dict(
                    session.execute(
                        select(Job.status, func.count())
                        .where(Job.id.in_(job_ids))
                        .group_by(Job.status)
                    ).all()
                )
            done = sum(count for status, count in rows.items() if JobStatus(status) in FINISHED)
            progress.update(task, completed=done, failed=rows.get(JobStatus.failed, 0))
            if done >= len(job_ids):
                return
            time.sleep(0.5)


def _report(
    settings: Settings, storage: Storage, roots: dict[uuid.UUID, str], out: Path | None
) -> None:
    from sqlalchemy import select

    with session_factory(settings.database_url)() as session:
        finished = list(
            session.scalars(select(Job).where(Job.batch_id.in_(roots)).order_by(Job.created_at))
        )
    succeeded = [j for j in finished if j.status == JobStatus.succeeded]
    failed = [j for j in finished if j.status == JobStatus.failed]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for job in succeeded:
            assert job.output_bucket and job.output_key and job.batch_id
            # Results keep the inputs' relative paths, with the output format's extension.
            relative = job.input_key.removeprefix(roots[job.batch_id]).lstrip("/")
            target = (out / relative).with_suffix(Path(job.output_key).suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(storage.get(job.output_bucket, job.output_key))
    console.print(f"{len(succeeded)} succeeded, {len(failed)} failed, {len(finished)} in all")
    if succeeded:
        where = out.resolve() if out else _result_location(settings)
        console.print(f"results are in [bold]{where}[/bold]")
    reasons: dict[str, str] = {}
    for job in failed:
        reasons.setdefault(job.error_code or "?", job.error_message or "")
    for code, message in reasons.items():
        count = sum(1 for j in failed if j.error_code == code)
        err.print(f"[red]{count} failed with {code}[/red]: {message}")
    if failed:
        raise typer.Exit(code=1)


def _result_location(settings: Settings) -> str:
    if settings.storage_backend == "local" and settings.storage_dir is not None:
        return str((settings.storage_dir / settings.output_bucket / "results").resolve())
    return f"s3://{settings.output_bucket}/results/"


@app.command()
def status(job_or_batch: Annotated[str, typer.Argument(help="A job id or a batch id.")]) -> None:
    """Show a job or a batch."""
    settings = _settings()
    try:
        ident = uuid.UUID(job_or_batch)
    except ValueError:
        raise _fail(f"{job_or_batch!r} is not a job or batch id") from None
    with session_factory(settings.database_url)() as session:
        try:
            job = jobs.get_job(session, ident)
        except JobNotFound:
            try:
                summary = jobs.summarize_batch(session, ident)
            except DarkroomError:
                raise _fail(f"no job or batch with id {ident}") from None
            table = Table("status", "jobs", title=f"batch {ident} ({summary.batch.model})")
            for name, count in summary.counts.items():
                table.add_row(name, str(count))
            console.print(table)
            rate = f"{summary.throughput_per_s:.2f}/s" if summary.throughput_per_s else "-"
            eta = f"{summary.eta_s:.0f}s" if summary.eta_s is not None else "-"
            console.print(f"{summary.done}/{summary.total} done, throughput {rate}, ETA {eta}")
            return
    table = Table("field", "value", title=f"job {job.id}")
    for name in (
        "status",
        "model",
        "input_bucket",
        "input_key",
        "output_bucket",
        "output_key",
        "attempts",
        "worker_host",
        "error_code",
        "error_message",
        "created_at",
        "started_at",
        "finished_at",
    ):
        table.add_row(name, str(getattr(job, name)))
    for stage, seconds in job.timings.items():
        table.add_row(f"{stage} s", "-" if seconds is None else f"{seconds:.3f}")
    console.print(table)


@app.command("eval")
def evaluate(
    set_names: Annotated[
        list[str] | None,
        typer.Option("--set", help="kodak24-handheld-night and/or lol-sample (default: both)."),
    ] = None,
    model: Annotated[str, typer.Option(help="Model to score.")] = DEFAULT_MODEL,
    limit: Annotated[int | None, typer.Option(help="Only the first N images.")] = None,
    save: Annotated[Path | None, typer.Option(help="Write every output here as PNG.")] = None,
) -> None:
    """PSNR and SSIM of a model on evaluation sets, next to the degraded input and a classical
    baseline (needs the `eval` extra: scikit-image)."""
    from workers.evaluation import SETS, load_set
    from workers.evaluation import evaluate as run_evaluation
    from workers.restorers import RestorerCache

    settings = get_settings()
    store = ModelStore(settings, make_storage(settings))
    try:
        restorer = RestorerCache(settings, store).get(store.resolve(model))
        sets = {name: load_set(name, settings.shared_dir, limit) for name in set_names or SETS}
    except DarkroomError as exc:
        raise _fail(f"{exc.code}: {exc.message}") from exc
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    for name, pairs in sets.items():
        if not pairs:
            raise _fail(f"no images for {name!r} under {settings.shared_dir.resolve()}")
        table = Table("method", "PSNR dB", "SSIM", "s/image", title=f"{name}, {len(pairs)} images")
        for result in run_evaluation(pairs, model, restorer.restore, save):
            table.add_row(
                result.method,
                f"{result.psnr:.2f}",
                f"{result.ssim:.4f}",
                f"{result.seconds_per_image:.2f}",
            )
        console.print(table)


if __name__ == "__main__":
    app()
