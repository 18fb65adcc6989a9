"""``darkroom eval``: how well models restore the evaluation sets (needs the eval extra).

Two kinds of set. The reference sets (kodak24-handheld-night, lol-sample) pair degraded inputs
with clean references and are scored with PSNR and SSIM. ``real-dim`` holds real night photos
without references: each method is scored with no-reference measures against targets, and
drawn on contact sheets so a person can look at every result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cli.common import console, fail
from shared.catalogue import DEFAULT_MODEL, ModelStore
from shared.config import Settings, get_settings
from shared.errors import DarkroomError
from shared.storage import make_storage

if TYPE_CHECKING:
    from evaluation.real_dim import PhotoResult
    from evaluation.reference_sets import Restore

REAL_DIM = "real-dim"
REFERENCE_SETS = ("kodak24-handheld-night", "lol-sample")
REAL_DIM_MODELS = ("darkroom-night-v1", DEFAULT_MODEL)
"""real-dim's default: the first darkroom-night beside the current one, whatever weights the
current one has, so every new version is seen next to the first."""
DEFAULT_SHEET = Path("eval-real-dim")
WORST_SHOWN = 3

SETS_HELP = (
    "Set to evaluate; repeat for several: kodak24-handheld-night, lol-sample (PSNR and SSIM "
    "against references), real-dim (real night photos: no-reference measures and contact "
    "sheets; slow on a CPU). Default: kodak24-handheld-night and lol-sample."
)
MODEL_HELP = (
    "Model to score; repeat for several (a preset or a chain such as a+b:task works as in a "
    f"job). Default: {DEFAULT_MODEL} on the reference sets; {' and '.join(REAL_DIM_MODELS)} "
    "on real-dim. Given, the same models run on every set."
)
SHEET_HELP = (
    "real-dim: folder for the contact sheets (one JPEG row per photo under <set>/, "
    f"index-NN.jpg pages of all photos, crops.jpg with 100 % crops). Default: ./{DEFAULT_SHEET}"
)
LIMIT_HELP = "Only the first N images of each set (real-dim: taken in turn from its sub-sets)."
JSON_HELP = "real-dim: write every per-photo figure, the targets and the summary here as JSON."


def evaluate(
    set_names: Annotated[
        list[str] | None, typer.Option("--set", metavar="NAME", help=SETS_HELP)
    ] = None,
    models: Annotated[
        list[str] | None, typer.Option("--model", metavar="MODEL", help=MODEL_HELP)
    ] = None,
    limit: Annotated[int | None, typer.Option(help=LIMIT_HELP)] = None,
    save: Annotated[Path | None, typer.Option(help="Write every output here as PNG.")] = None,
    sheet: Annotated[Path | None, typer.Option(metavar="DIR", help=SHEET_HELP)] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", metavar="PATH", help=JSON_HELP)
    ] = None,
) -> None:
    """Score models on evaluation sets, next to the untouched input and a classical baseline
    (needs the eval extra: scikit-image): PSNR and SSIM on the reference sets; on real-dim,
    shadows, mean luma, clipped+, noise and chroma against their targets, the photos that
    miss them most, and contact sheets."""
    names = list(dict.fromkeys(set_names or REFERENCE_SETS))
    unknown = [name for name in names if name not in (*REFERENCE_SETS, REAL_DIM)]
    if unknown:
        known = ", ".join((*REFERENCE_SETS, REAL_DIM))
        raise fail(f"unknown evaluation set {unknown[0]!r}; known: {known}")
    if (sheet or json_path) and REAL_DIM not in names:
        raise fail("--sheet and --json are for the real-dim set: add --set real-dim")
    settings = get_settings()
    wanted = {name: _models_for(name, models) for name in names}
    restores = _load_models([m for chosen in wanted.values() for m in chosen], settings)
    for name in names:
        chosen = [(m, restores[m]) for m in wanted[name]]
        if name == REAL_DIM:
            _real_dim(settings, chosen, limit, save, sheet or DEFAULT_SHEET, json_path)
        else:
            _reference(settings, name, chosen, limit, save)


def _models_for(set_name: str, asked: list[str] | None) -> list[str]:
    if asked:
        return list(dict.fromkeys(asked))
    return list(REAL_DIM_MODELS) if set_name == REAL_DIM else [DEFAULT_MODEL]


def _load_models(names: Sequence[str], settings: Settings) -> dict[str, Restore]:
    """Every model asked for, loaded through the workers' restorer cache before any photo
    runs, so a missing weight file fails at once rather than half-way through a long run."""
    from restoration.cache import RestorerCache
    from restoration.restorers import chain_restore

    store = ModelStore(settings, make_storage(settings))
    cache = RestorerCache(settings, store)
    try:
        return {
            name: chain_restore([(cache.get(entry), task) for entry, task in store.chain(name)])
            for name in dict.fromkeys(names)
        }
    except DarkroomError as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc


def _reference(
    settings: Settings,
    name: str,
    models: list[tuple[str, Restore]],
    limit: int | None,
    save: Path | None,
) -> None:
    from evaluation.reference_sets import evaluate as run_evaluation
    from evaluation.reference_sets import load_set

    try:
        pairs = load_set(name, settings.shared_dir, limit)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if not pairs:
        raise fail(f"no images for {name!r} under {settings.shared_dir.resolve()}")
    table = Table("method", "PSNR dB", "SSIM", "s/image", title=f"{name}, {len(pairs)} images")
    for result in run_evaluation(pairs, models, save):
        table.add_row(
            result.method,
            f"{result.psnr:.2f}",
            f"{result.ssim:.4f}",
            f"{result.seconds_per_image:.2f}",
        )
    console.print(table)


def _real_dim(
    settings: Settings,
    models: list[tuple[str, Restore]],
    limit: int | None,
    save: Path | None,
    sheet_dir: Path,
    json_path: Path | None,
) -> None:
    from evaluation import real_dim
    from evaluation.contact_sheet import ContactSheet

    photos = real_dim.list_photos(settings.shared_dir, limit)
    if not photos:
        raise fail(f"no images for {REAL_DIM!r} under {settings.shared_dir.resolve()}")
    methods = ", ".join(name for name, _ in real_dim.methods_for(models))
    console.print(f"{REAL_DIM}: {_photos(len(photos))}; methods: {methods}", markup=False)
    sheet = ContactSheet(sheet_dir)
    results = []
    runs = real_dim.evaluate(
        photos,
        real_dim.methods_for(models),
        max_pixels=settings.max_pixels,
        sheet=sheet,
        save_dir=save,
    )
    try:
        for number, result in enumerate(runs, start=1):
            seconds = ", ".join(f"{m} {s:.1f} s" for m, s in result.seconds.items())
            size = f"{result.width}x{result.height}"
            console.print(f"{number}/{len(photos)} {result.name} {size}: {seconds}", markup=False)
            results.append(result)
    except DarkroomError as exc:
        raise fail(f"{exc.code}: {exc.message}") from exc
    written = sheet.finish()
    _print_real_dim(results)
    pages = ", ".join(path.name for path in written)
    console.print(f"contact sheets in {sheet_dir}/: a row per photo under <set>/, {pages}")
    console.print(f"100 % crops of: {', '.join(sheet.cropped)}", markup=False)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(real_dim.as_json(results), indent=2) + "\n")
        console.print(f"per-photo figures: {json_path}")


def _photos(count: int) -> str:
    return f"{count} photo" if count == 1 else f"{count} photos"


def _print_real_dim(results: list[PhotoResult]) -> None:
    """The means and misses per method, with each target in its column's heading, then the
    photos furthest from each target per restoring method: the ones to look at first."""
    from evaluation.real_dim import INPUT, summarise, worst
    from imaging.no_reference import MEASURES, TARGETS

    digits = {"shadows": 3, "mean_luma": 3, "clipped_plus": 4, "noise": 2, "chroma_ratio": 2}
    table = Table(
        "method",
        *(f"{TARGETS[m].label}\n{TARGETS[m].describe()}" for m in MEASURES),
        "s/image",
        title=f"{REAL_DIM}, {_photos(len(results))}",
        caption="mean over the photos (in brackets: how many miss the target)",
    )
    summaries = summarise(results)
    for s in summaries:
        cells = (f"{s.means[m]:.{digits[m]}f} ({s.misses[m]})" for m in MEASURES)
        table.add_row(s.method, *cells, f"{s.seconds_per_image:.2f}")
    console.print(table)
    worst_table = Table(
        "measure",
        "method",
        f"worst {WORST_SHOWN} photos (! misses the target)",
        title=f"{REAL_DIM}: photos furthest from each target",
    )
    for m in MEASURES:
        for s in summaries:
            if s.method == INPUT:
                continue
            shown = (
                f"{photo} {value:.{digits[m]}f}{'!' if TARGETS[m].misses(value) else ''}"
                for photo, value in worst(results, s.method, m, WORST_SHOWN)
            )
            worst_table.add_row(TARGETS[m].label, s.method, ", ".join(shown))
    console.print(worst_table)
