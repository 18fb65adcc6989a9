"""``darkroom submit`` and ``darkroom status``: restore photos and follow them.

``submit`` takes local files and folders (uploaded under one fresh prefix, keeping their folder
structure) or object-key prefixes, creates one batch per prefix, and in the embedded mode runs
the jobs in this process.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import console, err, fail, load_settings, rich_progress
from shared import jobs
from shared.catalogue import DEFAULT_MODEL, ModelStore
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import FINISHED, JobStatus
from shared.errors import DarkroomError, JobNotFound
from shared.jobs.submit import submit_batch
from shared.queue.dispatch import NoDispatch, make_dispatcher
from shared.review import RULES
from shared.storage import Storage, make_storage
from shared.storage.keys import safe_filename

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic"}


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
            safe = "/".join(safe_filename(part) for part in name.split("/"))
            storage.put(settings.input_bucket, root + safe, path.read_bytes())
    return root


def submit(
    paths: Annotated[
        list[str], typer.Argument(help="Local files or folders, or object-key prefixes.")
    ],
    model: Annotated[
        str, typer.Option(help="Model name (see: darkroom models list).")
    ] = DEFAULT_MODEL,
    wait: Annotated[bool, typer.Option(help="Wait for every job to finish.")] = False,
    out: Annotated[Path | None, typer.Option(help="Download results into this folder.")] = None,
    jpeg_quality: Annotated[int | None, typer.Option(min=1, max=100)] = None,
    task: Annotated[str | None, typer.Option(help="Task of a multi-task model.")] = None,
) -> None:
    """Restore photos: one batch over every image given."""
    settings = load_settings()
    storage = make_storage(settings)
    storage.ensure_bucket(settings.output_bucket)
    files, prefixes = _collect(paths)
    if not files and not prefixes:
        raise fail("no images found in the paths given")
    options: dict[str, object] = {"jpeg_quality": jpeg_quality} if jpeg_quality else {}
    if task:
        options["task"] = task
    dispatcher = make_dispatcher(settings)
    models = ModelStore(settings, storage)
    sessions = session_factory(settings.database_url)
    roots: dict[uuid.UUID, str] = {}
    try:
        if files:
            prefixes.insert(0, _upload(storage, settings, files))
        with sessions() as session:
            for prefix in prefixes:
                batch, _ = submit_batch(
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
        raise fail(exc.message) from exc
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
    with session_factory(settings.database_url)() as session:
        return [job.id for job in jobs.jobs_of_batches(session, batch_ids)]


def _run_inline(settings: Settings, job_ids: list[uuid.UUID]) -> None:
    from workers.context import WorkerContext, start_process
    from workers.pipeline import run_inline

    # Per-job failures are summarised after the progress bar; keep only real trouble here.
    logging.getLogger("workers").setLevel(logging.ERROR)
    ctx = WorkerContext.build(settings)
    start_process(ctx, NoDispatch(), serving=False)  # heartbeats: a poller never reaps ours
    failed = 0
    with rich_progress("restoring", count_failed=True) as progress:
        task = progress.add_task("jobs", total=len(job_ids), failed=0)
        for job_id in job_ids:
            if run_inline(job_id, ctx) == JobStatus.failed:
                failed += 1
            progress.update(task, advance=1, failed=failed)


def _wait(settings: Settings, job_ids: list[uuid.UUID]) -> None:
    sessions = session_factory(settings.database_url)
    with rich_progress("restoring", count_failed=True) as progress:
        task = progress.add_task("jobs", total=len(job_ids), failed=0)
        while True:
            with sessions() as session:
                rows = jobs.status_counts(session, job_ids)
            done = sum(count for status, count in rows.items() if status in FINISHED)
            progress.update(task, completed=done, failed=rows.get(JobStatus.failed, 0))
            if done >= len(job_ids):
                return
            time.sleep(0.5)


def _report(
    settings: Settings, storage: Storage, roots: dict[uuid.UUID, str], out: Path | None
) -> None:
    with session_factory(settings.database_url)() as session:
        finished = jobs.jobs_of_batches(session, list(roots))
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
    unmeasured = [j for j in succeeded if j.measure_error]
    if unmeasured:  # restored all the same: say so, once, with the first reason
        err.print(
            f"[yellow]{len(unmeasured)} restored without quality signals[/yellow]: "
            f"{unmeasured[0].measure_error}"
        )
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


def status(job_or_batch: Annotated[str, typer.Argument(help="A job id or a batch id.")]) -> None:
    """Show a job or a batch."""
    settings = load_settings()
    try:
        ident = uuid.UUID(job_or_batch)
    except ValueError:
        raise fail(f"{job_or_batch!r} is not a job or batch id") from None
    with session_factory(settings.database_url)() as session:
        try:
            job = jobs.get_job(session, ident)
        except JobNotFound:
            try:
                summary = jobs.summarize_batch(session, ident)
            except DarkroomError:
                raise fail(f"no job or batch with id {ident}") from None
            table = Table("status", "jobs", title=f"batch {ident} ({summary.batch.model})")
            for name, count in summary.counts.items():
                table.add_row(name, str(count))
            console.print(table)
            rate = f"{summary.throughput_per_s:.2f}/s" if summary.throughput_per_s else "-"
            eta = f"{summary.eta_s:.0f}s" if summary.eta_s is not None else "-"
            console.print(f"{summary.done}/{summary.total} done, throughput {rate}, ETA {eta}")
            review = jobs.review_counts(session, ident)
            decided = ", ".join(f"{count} {name}" for name, count in review.decisions.items())
            console.print(f"review: {review.flagged} flagged, {review.pending} awaiting, {decided}")
            apart = ", ".join(f"{n} {name}" for name, n in review.unflagged.items() if n)
            if apart:
                console.print(f"decided though not flagged: {apart}")
            for rule, count in review.rules.items():
                console.print(f"  {count} {RULES[rule].title}")
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
        "measure_error",
        "created_at",
        "started_at",
        "finished_at",
    ):
        table.add_row(name, str(getattr(job, name)))
    for stage, seconds in job.timings.items():
        table.add_row(f"{stage} s", "-" if seconds is None else f"{seconds:.3f}")
    table.add_row("flagged", "yes" if job.flagged else "no")
    for reason in job.review_reasons or []:
        table.add_row("  reason", reason["message"])
    if job.review_decision:
        table.add_row("review decision", job.review_decision.value)
    console.print(table)
    if job.quality:
        _print_quality(job.quality)


def _print_quality(quality: dict[str, Any]) -> None:
    """The signals of the input beside the result's, as ``GET /v1/jobs/{id}`` has them."""
    table = Table("signal", "input", "result", title="quality (512-px copies)")
    before, after = quality.get("input", {}), quality.get("result", {})
    for name in before:
        table.add_row(name, f"{before[name]:.4g}", f"{after.get(name, float('nan')):.4g}")
    console.print(table)
