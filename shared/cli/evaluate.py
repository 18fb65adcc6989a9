"""``darkroom eval``: how well a model restores the evaluation sets (needs the eval extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shared.catalogue import DEFAULT_MODEL, ModelStore
from shared.cli.common import console, fail
from shared.config import get_settings
from shared.errors import DarkroomError
from shared.storage import make_storage


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
        raise fail(f"{exc.code}: {exc.message}") from exc
    except ValueError as exc:
        raise fail(str(exc)) from exc
    for name, pairs in sets.items():
        if not pairs:
            raise fail(f"no images for {name!r} under {settings.shared_dir.resolve()}")
        table = Table("method", "PSNR dB", "SSIM", "s/image", title=f"{name}, {len(pairs)} images")
        for result in run_evaluation(pairs, model, restorer.restore, save):
            table.add_row(
                result.method,
                f"{result.psnr:.2f}",
                f"{result.ssim:.4f}",
                f"{result.seconds_per_image:.2f}",
            )
        console.print(table)
