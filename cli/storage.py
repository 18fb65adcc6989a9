"""``darkroom buckets``: the object store's buckets Darkroom reads and writes."""

from __future__ import annotations

import typer

from cli.common import console, fail
from shared.config import get_settings
from shared.errors import DarkroomError
from shared.storage import make_storage

app = typer.Typer(help="Object-store buckets.", no_args_is_help=True, rich_markup_mode=None)


@app.command("create")
def create_buckets() -> None:
    """Create the input and output buckets (and the model bucket, when one is set) where
    they do not exist yet; buckets that exist are left as they are."""
    settings = get_settings()
    storage = make_storage(settings)
    names = [settings.input_bucket, settings.output_bucket, settings.model_bucket]
    for bucket in [name for name in names if name]:
        try:
            storage.ensure_bucket(bucket)
        except DarkroomError as exc:
            raise fail(exc.message) from exc
        console.print(f"bucket {bucket} is ready")
