"""``darkroom models``: list, pull, add and verify model weights in the model store."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich import box
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from cli.common import console, fail
from shared.catalogue import ModelEntry, ModelStore, sha256_file, validate_name
from shared.config import get_settings
from shared.errors import DarkroomError, UnsupportedCheckpoint
from shared.storage import make_storage

app = typer.Typer(help="Model weights: list, pull, add, verify.", rich_markup_mode=None)
WIDE_LISTING = 110
"""Columns from which ``models list`` has room for the weights' file names."""
TASKS = ("low-light", "deblur", "denoise", "derain", "super-resolution", "all-in-one")


def _store() -> ModelStore:
    settings = get_settings()
    storage = make_storage(settings)
    if settings.model_bucket:
        storage.ensure_bucket(settings.model_bucket)
    return ModelStore(settings, storage)


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        list_models()


@app.command("list")
def list_models() -> None:
    """Every model Darkroom knows: its queue, whether its weights are installed, and its
    licence (non-commercial ones are refused unless DARKROOM_ALLOW_NONCOMMERCIAL_MODELS is on).
    One line a model on an 80-column terminal; ``darkroom models show NAME`` has the rest."""
    store = _store()
    settings = store.settings
    entries = store.entries()
    # One line a model on an 80-column terminal: a name is what a person types next, so it is
    # never cut; the weights' file name comes only where there is room (``show`` has it all).
    wide = console.width >= WIDE_LISTING
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("name", no_wrap=True, min_width=max(len(e.name) for e in entries))
    table.add_column("task", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("ready", no_wrap=True)
    table.add_column("licence", no_wrap=True)
    if wide:
        table.add_column("weights", overflow="fold")
    for entry in entries:
        ready = "[green]yes[/green]" if store.ready(entry) else "[yellow]no[/yellow]"
        row: list[str | Text] = [
            entry.name,
            entry.task,
            entry.family,
            ready,
            _licence_short(entry, allowed=store.allowed(entry)),
        ]
        table.add_row(*row, *([entry.weights_file] if wide else []))
    console.print(table)
    console.print(f"A family's jobs go to the queue {settings.queue_for('<family>')}.")
    console.print("darkroom models show NAME: the licence in full, the file, where to get it.")


@app.command()
def show(name: Annotated[str, typer.Argument(help="A catalogue model.")]) -> None:
    """One model in full: what it does, its licence, its file and where to get it, and whether
    it is ready here (with the local path the worker reads, for the operator)."""
    store = _store()
    try:
        entry = store.resolve(name)
    except DarkroomError as exc:
        raise fail(exc.message) from exc
    settings = store.settings
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows: list[tuple[str, str | Text]] = [
        ("name", entry.name),
        ("task", entry.task + (f" (per job: {', '.join(entry.tasks)})" if entry.tasks else "")),
        ("description", entry.description),
        ("architecture", entry.architecture),
        ("queue", settings.queue_for(entry.family)),
        ("ready", "yes" if store.ready(entry) else "no: darkroom models pull " + entry.name),
        ("licence", _licence(entry, allowed=store.allowed(entry))),
        ("weights", entry.weights_file),
        ("stored at", store.describe(entry.weights_file)),
    ]
    if entry.parameters:
        rows.append(("parameters", f"{entry.parameters:,}"))
    if entry.sha256:
        rows.append(("sha256", entry.sha256))
    rows += [("download", url) for url in entry.urls]
    rows += [("published at", url) for url in entry.source_urls]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)


def _licence_short(entry: ModelEntry, *, allowed: bool) -> Text:
    """The licence in a word for the listing: its identifier, or NON-COMMERCIAL in red with
    whether this server refuses it (``show`` has the full text)."""
    if entry.noncommercial:
        text = Text("NON-COMMERCIAL", style="bold red")
        text.append(", allowed" if allowed else ", refused")
        return text
    first = entry.licence.split()[0] if entry.licence else ""
    return Text(first if first and first != "see" else "see upstream")


def _licence(entry: ModelEntry, *, allowed: bool) -> Text:
    """The licence as the user should read it: a non-commercial one says so first."""
    if not entry.noncommercial:
        return Text(entry.licence or "not stated")
    state = "allowed here" if allowed else "refused: DARKROOM_ALLOW_NONCOMMERCIAL_MODELS is off"
    text = Text("NON-COMMERCIAL ", style="bold red")
    text.append(f"({state}): {entry.licence}")
    return text


def _download(url: str, target: Path) -> None:
    with (
        httpx.stream("GET", url, follow_redirects=True, timeout=60) as response,
        Progress(
            TextColumn("[bold]downloading[/bold]"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
        ) as progress,
    ):
        response.raise_for_status()
        total = int(response.headers.get("content-length", 0)) or None
        task = progress.add_task("download", total=total)
        with target.open("wb") as handle:
            for chunk in response.iter_bytes(1 << 20):
                handle.write(chunk)
                progress.update(task, advance=len(chunk))


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="A catalogue model.")],
    url: Annotated[str | None, typer.Option(help="Download from here instead.")] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 of the file.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Install this local copy instead of downloading (no internet access); it is "
            "verified the same way.",
        ),
    ] = None,
) -> None:
    """Download a model's published checkpoint into the model store, verifying SHA-256; a file
    with another digest is refused and nothing is stored."""
    store = _store()
    try:
        entry = store.resolve(name)
    except DarkroomError as exc:
        raise fail(exc.message) from exc
    if entry.noncommercial:
        console.print(
            f"{name}: licence {entry.licence}. Jobs may use it only where "
            "DARKROOM_ALLOW_NONCOMMERCIAL_MODELS=true.",
            markup=False,
        )
    if file is not None:
        try:
            digest = store.put_weights(entry, file, sha256)
        except DarkroomError as exc:
            raise fail(exc.message) from exc
        console.print(f"{name}: stored {store.describe(entry.weights_file)}, SHA-256 {digest}")
        return
    source = url or (entry.urls[0] if entry.urls else None)
    if source is None:
        pages = " or ".join(entry.source_urls) or "its publisher"
        raise fail(
            f"{name!r} has no direct download: get {entry.weights_file} from {pages}, then "
            f"`darkroom models pull {name} --url FILE_URL` or save it as "
            f"{store.describe(entry.weights_file)}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / entry.weights_file
        try:
            _download(source, target)
            digest = store.put_weights(entry, target, sha256)
        except httpx.HTTPError as exc:
            raise fail(f"download of {source} failed: {exc}") from exc
        except DarkroomError as exc:
            raise fail(exc.message) from exc
    trust = "verified" if entry.sha256 or sha256 else "recorded (no published digest)"
    console.print(f"{name}: stored {store.describe(entry.weights_file)}, SHA-256 {digest} {trust}")


@app.command()
def add(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Checkpoint file.")],
    name: Annotated[str, typer.Option(help="Name jobs will use.")],
    task: Annotated[str, typer.Option(help=f"One of: {', '.join(TASKS)}.")],
    description: Annotated[str, typer.Option(help="One line users see.")] = "",
) -> None:
    """Register a local checkpoint whose architecture spandrel recognises."""
    from restoration.spandrel_models import load_spandrel

    if task not in TASKS:
        raise fail(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")
    try:
        validate_name(name)
        loaded = load_spandrel(file)
    except UnsupportedCheckpoint as exc:
        raise fail(str(exc)) from exc
    except DarkroomError as exc:
        raise fail(exc.message) from exc
    entry = ModelEntry(
        name=name,
        task=task,
        architecture=loaded.architecture,
        family="spandrel",
        description=description or f"{loaded.architecture} checkpoint added by an operator.",
        weights_file=f"{name}{file.suffix}",
        scale=loaded.scale,
        tasks=loaded.tasks if len(loaded.tasks) > 1 else (),
    )
    try:
        entry = _store().add(entry, file)
    except DarkroomError as exc:
        raise fail(exc.message) from exc
    console.print(
        f"added {name}: {loaded.architecture}, scale {loaded.scale}, SHA-256 {entry.sha256}"
    )


@app.command()
def verify(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to check (default: all).")
    ] = None,
) -> None:
    """Check installed weights against their SHA-256; exit 1 on any mismatch."""
    store = _store()
    table = Table("name", "state", "detail")
    bad = 0
    for entry in store.entries():
        if names and entry.name not in names:
            continue
        if not store.ready(entry):
            table.add_row(
                entry.name, "[yellow]missing[/yellow]", store.describe(entry.weights_file)
            )
            continue
        try:
            path = store.local_weights(entry)
        except DarkroomError as exc:
            bad += 1
            table.add_row(entry.name, "[red]mismatch[/red]", exc.message)
            continue
        expected = store.expected_sha256(entry)
        detail = sha256_file(path) if expected is None else "SHA-256 matches"
        table.add_row(entry.name, "[green]ok[/green]", detail)
    console.print(table)
    if bad:
        raise typer.Exit(code=1)
