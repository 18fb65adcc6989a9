"""``darkroom report``: a batch's report page as one self-contained HTML file.

The same page ``GET /v1/batches/{id}/report`` serves, with the previews inlined, for a person
without the server: it opens from a disk, a mail attachment or a shared folder. Decisions are
recorded on the served page; the file is a snapshot.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, fail, load_settings
from shared import jobs
from shared.catalogue import ModelStore
from shared.db.engine import session_factory
from shared.db.tables import Job
from shared.errors import DarkroomError
from shared.storage import make_storage


def report(
    batch: Annotated[str, typer.Argument(help="The batch id.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    limit: Annotated[
        int,
        typer.Option(
            min=1,
            max=2**31 - 1,  # what a database takes as a LIMIT: a larger one is an outage, not 0
            help="Most photos in the file: flagged ones first, then failed ones.",
        ),
    ] = 500,
) -> None:
    """Write a batch's report page, previews inlined, to one file."""
    from api.reports import Filters, render_report

    settings = load_settings()
    storage = make_storage(settings)
    try:
        batch_id = uuid.UUID(batch)
    except ValueError:
        raise fail(f"{batch!r} is not a batch id") from None

    def inline(job: Job, side: str) -> str | None:
        key = job.preview_key(side)
        if key is None:
            return None
        try:
            data = storage.get(settings.output_bucket, key)
        except DarkroomError:
            return None  # a preview gone missing shows as "no preview", not a broken file
        return "data:image/jpeg;base64," + base64.b64encode(data).decode()

    try:
        with session_factory(settings.database_url)() as session:
            summary = jobs.summarize_batch(session, batch_id)
            page, matching = jobs.report_jobs(session, batch_id, limit=limit)
            html = render_report(
                summary,
                jobs.review_counts(session, batch_id),
                page,
                matching=matching,
                previews=inline,
                redone_by=jobs.redone_by(session, [job.id for job in page]),
                filters=Filters(),
                models=[e.name for e in ModelStore(settings, storage).entries()],
                interactive=False,
            )
    except DarkroomError as exc:
        raise fail(exc.message) from None
    out.write_text(html, encoding="utf-8")
    left = (
        f" (the first {len(page)} of {matching}: raise --limit for more)"
        if matching > len(page)
        else ""
    )
    console.print(f"wrote the report of batch {batch_id} to {out.resolve()}{left}")
