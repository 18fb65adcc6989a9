"""The ``real-dim`` evaluation set: real night photos, scored without references.

The reference sets (``evaluation.reference_sets``) degrade clean photos synthetically, which says
how well a model undoes *those* degradations. Real dim photos have correlated sensor noise, light
sources, colour casts and compression the synthetic ones lack, and no clean version, so here
every method is scored with the no-reference measures of ``imaging.no_reference`` against
their targets, and drawn on contact sheets (``evaluation.contact_sheet``) for a person to judge.

Photos run one at a time through every method (the input itself, the classical baseline, each
model), so only one photo's outputs are ever in memory, however large the set's photos are.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.contact_sheet import ContactSheet, Panel, to_image
from evaluation.reference_sets import Restore, classical_baseline
from imaging.decoding import decode
from imaging.no_reference import MEASURES, TARGETS, match_size, measure

REAL_DIM = "real-dim"
SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
INPUT = "input"
CLASSICAL = "classical"


@dataclass(frozen=True)
class PhotoFile:
    name: str
    """``<set>/<file stem>``, e.g. ``npe/NPE_89``: unique in the set, and how rows are named."""
    path: Path


@dataclass(frozen=True)
class PhotoResult:
    name: str
    width: int
    height: int
    figures: dict[str, dict[str, float]]
    """Method -> measure -> value, every method of the run and every one of ``MEASURES``."""
    seconds: dict[str, float]
    """Method -> seconds it took to restore this photo."""


@dataclass(frozen=True)
class MethodSummary:
    method: str
    means: dict[str, float]
    misses: dict[str, int]
    """Measure -> how many photos miss its target."""
    seconds_per_image: float
    photos: int


def list_photos(shared_dir: Path, limit: int | None = None) -> list[PhotoFile]:
    """The set's photos in (set, name) order; with ``limit``, the first ``limit`` taken in
    turn from each set, so a short run still sees every kind of photo it has room for."""
    root = shared_dir / "eval" / REAL_DIM
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    sets = [
        sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        for folder in folders
    ]
    in_turn = [p for turn in itertools.zip_longest(*sets) for p in turn if p is not None]
    chosen = sorted(in_turn[:limit], key=lambda p: (p.parent.name, p.name))
    return [PhotoFile(f"{p.parent.name}/{p.stem}", p) for p in chosen]


def read_photo(photo: PhotoFile, max_pixels: int) -> np.ndarray:
    """The photo as jobs see it: Darkroom's decoder (EXIF orientation, colour modes, the pixel
    limit), transparency dropped."""
    return decode(photo.path.read_bytes(), max_pixels=max_pixels).pixels


def methods_for(models: Sequence[tuple[str, Restore]]) -> list[tuple[str, Restore]]:
    """The methods every photo runs through: the input, the classical baseline, each model."""
    return [(INPUT, lambda image: image), (CLASSICAL, classical_baseline), *models]


def evaluate(
    photos: Sequence[PhotoFile],
    methods: Sequence[tuple[str, Restore]],
    *,
    max_pixels: int,
    sheet: ContactSheet | None = None,
    save_dir: Path | None = None,
) -> Iterator[PhotoResult]:
    """Each photo's figures for every method, photo after photo (write ``sheet``'s index
    pages with its ``finish`` once done)."""
    for photo in photos:
        pixels = read_photo(photo, max_pixels)
        outputs, seconds = {}, {}
        for name, restore in methods:
            start = time.perf_counter()
            outputs[name] = match_size(np.clip(restore(pixels), 0.0, 1.0), pixels)
            seconds[name] = time.perf_counter() - start
        result = PhotoResult(
            photo.name,
            int(pixels.shape[1]),
            int(pixels.shape[0]),
            {name: measure(pixels, output) for name, output in outputs.items()},
            seconds,
        )
        if sheet is not None:
            _draw(sheet, result, outputs)
        if save_dir is not None:
            for name, output in outputs.items():
                path = save_dir / f"{photo.name}-{name}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                to_image(output).save(path)
        yield result


def _draw(sheet: ContactSheet, result: PhotoResult, outputs: dict[str, np.ndarray]) -> None:
    """The input first, then the models in the order asked, the classical baseline last; the
    crops go to the photos whose model outputs are noisiest."""
    order = [INPUT, *(m for m in outputs if m not in (INPUT, CLASSICAL)), CLASSICAL]
    panels = [
        Panel(name, outputs[name], caption(result.figures[name]))
        for name in order
        if name in outputs
    ]
    noise = {m: f["noise"] for m, f in result.figures.items() if m != INPUT}
    models = [value for m, value in noise.items() if m != CLASSICAL]
    priority = max(models or list(noise.values()) or [0.0])
    sheet.add(result.name, f"{result.width}x{result.height}", panels, priority)


def caption(figures: dict[str, float]) -> tuple[str, str]:
    """Two lines of figures for a panel; ``!`` marks a figure that misses its target."""

    def show(measure: str, label: str, digits: int) -> str:
        value = figures[measure]
        mark = "!" if TARGETS[measure].misses(value) else ""
        return f"{label} {value:.{digits}f}{mark}"

    return (
        f"{show('shadows', 'shadows', 3)}  {show('mean_luma', 'luma', 3)}",
        f"{show('clipped_plus', 'clip+', 4)}  {show('noise', 'noise', 2)}  "
        f"{show('chroma_ratio', 'chroma', 2)}",
    )


def summarise(results: Sequence[PhotoResult]) -> list[MethodSummary]:
    """Per method, in the run's order: the mean of each measure over the photos and how many
    photos miss each target."""
    if not results:
        return []
    summaries = []
    for method in results[0].figures:
        values = {m: [r.figures[method][m] for r in results] for m in MEASURES}
        summaries.append(
            MethodSummary(
                method,
                {m: float(np.mean(v)) for m, v in values.items()},
                {m: sum(TARGETS[m].misses(x) for x in v) for m, v in values.items()},
                float(np.mean([r.seconds[method] for r in results])),
                len(results),
            )
        )
    return summaries


def worst(
    results: Sequence[PhotoResult], method: str, measure: str, count: int = 3
) -> list[tuple[str, float]]:
    """The ``count`` photos furthest from ``measure``'s target for ``method``, worst first
    (met targets included when fewer photos miss it), as (photo, value)."""
    target = TARGETS[measure]
    ranked = sorted(results, key=lambda r: (-target.excess(r.figures[method][measure]), r.name))
    return [(r.name, r.figures[method][measure]) for r in ranked[:count]]


def as_json(results: Sequence[PhotoResult]) -> dict[str, Any]:
    """Every per-photo figure, the targets and the summaries, for ``--json``."""
    return {
        "set": REAL_DIM,
        "targets": {
            m: {"low": t.low, "high": t.high, "label": t.label} for m, t in TARGETS.items()
        },
        "summary": [
            {
                "method": s.method,
                "means": s.means,
                "misses": s.misses,
                "seconds_per_image": s.seconds_per_image,
                "photos": s.photos,
            }
            for s in summarise(results)
        ],
        "photos": [
            {
                "photo": r.name,
                "width": r.width,
                "height": r.height,
                "figures": r.figures,
                "seconds": r.seconds,
            }
            for r in results
        ],
    }
