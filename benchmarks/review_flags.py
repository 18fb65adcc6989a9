"""How well the review flags work: a labelled batch where some photos are made to fail in known
ways and the rest are ordinary, run through the embedded pipeline, flags counted per rule.

The batch, built from clean photos:

* **ordinary**: each photo through the fixed degradation recipe of the evaluation sets (dim,
  shaken, noisy, JPEG), plus LoL's real low-light photos in the evaluation run;
* **too dark**: the same recipe with the exposure cut to 1/600, far below the recipe's 1/40
  (darker than any model recovers); the rules meant to catch it: ``input_too_dark``,
  ``still_dark``;
* **blurred**: a Gaussian blur of 2 % of the photo's long side before the recipe
  (``input_blurred``);
* **well exposed**: the clean photo itself (``input_well_exposed``);
* **colour cast**: the recipe's output with its channels scaled to an extreme orange or blue
  cast (``colour_shifted``).

Every photo is a job of one batch, run by the same code as ``darkroom submit`` (embedded:
SQLite, a local folder, this process), so the flags are the ones a user gets. Per rule the
table prints: photos flagged, true flags (on a made-to-fail photo of a kind the rule is meant
for), missed (photos of those kinds the rule let through), false flags (on ordinary photos);
then the share of made-to-fail photos flagged by any rule (goal: at least 90 %) and of ordinary
ones (goal: at most 10 %).

``--set eval`` (the default) builds the batch from Kodak and LoL; ``--set tune`` from BSDS500
``test`` photos, which is what the default thresholds (``Settings.review``) were chosen on:
the evaluation sets never tuned anything. ``--signals FILE`` saves every job's quality
signals and label, so thresholds can be studied without running the model again. Run::

    .venv/bin/python -m benchmarks.review_flags [--set eval|tune] [--model darkroom-night]
        [--limit N] [--signals signals.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from rich.console import Console
from rich.table import Table

from benchmarks.embedded import embedded_home
from shared.config import Settings
from shared.review import RULES, check, resolve_thresholds

KINDS: dict[str, tuple[str, ...]] = {
    "ordinary": (),
    "too dark": ("input_too_dark", "still_dark"),
    "blurred": ("input_blurred",),
    "well exposed": ("input_well_exposed",),
    "colour cast": ("colour_shifted",),
}
"""Each kind of photo in the batch, and the rules meant to flag it."""

EVAL_SEED = 20261202
TUNE_SEED = 20261203
TOO_DARK_EXPOSURE = 1.0 / 600.0
BLUR_SHARE = 0.02
CASTS = (np.array([1.0, 0.5, 0.18]), np.array([0.22, 0.55, 1.0]))
"""Orange (sodium light gone wrong) and blue (a daylight white balance under tungsten), as
channel gains."""


@dataclass(frozen=True)
class Photo:
    name: str
    kind: str
    pixels: np.ndarray


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _sources(which: str, shared_dir: Path, limit: int | None) -> tuple[list[Path], list[Path]]:
    """(clean photos, real low-light photos that are ordinary as they are)."""
    if which == "tune":
        clean = sorted((shared_dir / "data" / "bsds500" / "test").glob("*.jpg"))
        return clean[: limit or 40], []
    clean = sorted((shared_dir / "eval" / "kodak24").glob("*.png"))[:limit]
    lows = sorted((shared_dir / "eval" / "lol-sample" / "low").glob("*.png"))[:limit]
    return clean, lows


def labelled_batch(which: str, shared_dir: Path, limit: int | None = None) -> Iterator[Photo]:
    from degradation.recipe import DegradationParams, degrade, sample_params

    clean_paths, lows = _sources(which, shared_dir, limit)
    seed = TUNE_SEED if which == "tune" else EVAL_SEED
    for index, path in enumerate(clean_paths):
        clean = _read(path)
        params = sample_params(np.random.default_rng([seed, index, 0]))

        def recipe(
            image: np.ndarray, draw: int, p: DegradationParams = params, at: int = index
        ) -> np.ndarray:
            """The recipe with this photo's parameters; ``draw`` seeds its noise."""
            return degrade(image, np.random.default_rng([seed, at, draw]), p)[0]

        yield Photo(f"{path.stem}-ordinary", "ordinary", recipe(clean, 1))
        dark = dataclasses.replace(params, exposure=TOO_DARK_EXPOSURE)
        yield Photo(f"{path.stem}-too-dark", "too dark", recipe(clean, 2, dark))
        radius = BLUR_SHARE * max(clean.shape[:2])
        blurred = Image.fromarray((clean * 255 + 0.5).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius)
        )
        yield Photo(
            f"{path.stem}-blurred", "blurred", recipe(np.asarray(blurred, np.float32) / 255, 3)
        )
        yield Photo(f"{path.stem}-well-exposed", "well exposed", clean)
        cast = CASTS[index % len(CASTS)]
        yield Photo(f"{path.stem}-cast", "colour cast", np.clip(recipe(clean, 4) * cast, 0, 1))
    for path in lows:
        yield Photo(f"lol-{path.stem}", "ordinary", _read(path))


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def run_batch(photos: list[Photo], model: str, home: Path) -> list[dict[str, object]]:
    """Every photo as a job of one embedded batch; each job's label, quality and flags."""
    from shared import jobs
    from shared.catalogue import ModelStore
    from shared.db.engine import session_factory
    from shared.queue.dispatch import NoDispatch
    from workers.context import WorkerContext
    from workers.pipeline import run_inline

    settings, storage = embedded_home(home)
    labels = {}
    for photo in photos:
        key = f"flags/{photo.name}.png"
        storage.put(settings.input_bucket, key, _png(photo.pixels))
        labels[key] = photo.kind
    sessions = session_factory(settings.database_url)
    with sessions() as session:
        batch, _ = jobs.submit_batch(
            session,
            settings,
            NoDispatch(),
            storage,
            ModelStore(settings, storage),
            model=model,
            keys=list(labels),
        )
        job_ids = [job.id for job in jobs.jobs_of_batches(session, [batch.id])]
    ctx = WorkerContext.build(settings)
    for done, job_id in enumerate(job_ids, 1):
        run_inline(job_id, ctx)
        if done % 10 == 0:
            print(f"  {done}/{len(job_ids)} jobs", flush=True)
    with sessions() as session:
        finished = jobs.jobs_of_batches(session, [batch.id])
        return [
            {
                "name": Path(job.input_key).stem,
                "kind": labels[job.input_key],
                "status": job.status.value,
                "quality": job.quality,
                "rules": [reason["rule"] for reason in job.review_reasons or []],
                "measure_s": job.measure_s,
                "job_s": sum(v or 0.0 for k, v in job.timings.items() if k != "device"),
            }
            for job in finished
        ]


def flags_of(rows: list[dict[str, object]], thresholds: dict[str, float | None]) -> list[set[str]]:
    """Each row's tripped rules under ``thresholds`` (from its stored quality)."""
    flags: list[set[str]] = []
    for row in rows:
        quality = row["quality"]
        flags.append({r["rule"] for r in check(quality, thresholds)} if quality else set())  # type: ignore[arg-type]
    return flags


def rule_counts(
    rows: list[dict[str, object]], flags: list[set[str]]
) -> dict[str, tuple[int, int, int | None, int]]:
    """Per rule: (flagged, true flags, missed, false flags); missed is None for a rule no
    made-to-fail kind is meant for."""
    counts = {}
    for name in RULES:
        meant = {kind for kind, rules in KINDS.items() if name in rules}
        fired = [row for row, f in zip(rows, flags, strict=True) if name in f]
        true = sum(1 for row in fired if row["kind"] in meant)
        targets = [f for row, f in zip(rows, flags, strict=True) if row["kind"] in meant]
        missed = sum(1 for f in targets if name not in f) if meant else None
        false = sum(1 for row in fired if row["kind"] == "ordinary")
        counts[name] = (len(fired), true, missed, false)
    return counts


def table(rows: list[dict[str, object]], flags: list[set[str]], title: str) -> Table:
    out = Table("rule", "flagged", "true flags", "missed", "false flags", title=title)
    for name, (fired, true, missed, false) in rule_counts(rows, flags).items():
        out.add_row(name, str(fired), str(true), "-" if missed is None else str(missed), str(false))
    return out


def summary(rows: list[dict[str, object]], flags: list[set[str]]) -> dict[str, float]:
    failing = [bool(f) for row, f in zip(rows, flags, strict=True) if row["kind"] != "ordinary"]
    ordinary = [bool(f) for row, f in zip(rows, flags, strict=True) if row["kind"] == "ordinary"]
    per_kind = {}
    for kind in KINDS:
        of_kind = [bool(f) for row, f in zip(rows, flags, strict=True) if row["kind"] == kind]
        per_kind[kind] = sum(of_kind) / max(1, len(of_kind))
    return {
        "made_to_fail_flagged": sum(failing) / max(1, len(failing)),
        "ordinary_flagged": sum(ordinary) / max(1, len(ordinary)),
        **{f"{kind} flagged": share for kind, share in per_kind.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=["eval", "tune"], default="eval")
    parser.add_argument("--model", default="darkroom-night")
    parser.add_argument("--limit", type=int, default=None, help="Clean photos to build from.")
    parser.add_argument("--signals", type=Path, default=None, help="Save the signals here.")
    parser.add_argument(
        "--from-signals",
        type=Path,
        default=None,
        help="Count flags on signals saved before, without running the model.",
    )
    args = parser.parse_args()
    settings = Settings()
    console = Console()
    if args.from_signals:
        rows = json.loads(args.from_signals.read_text())
    else:
        photos = list(labelled_batch(args.set, settings.shared_dir, args.limit))
        console.print(f"{len(photos)} photos ({args.set} set), model {args.model}")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as home:
            rows = run_batch(photos, args.model, Path(home))
        console.print(f"ran in {time.perf_counter() - started:.0f} s")
        if args.signals:
            args.signals.write_text(json.dumps(rows, indent=1))
    flags = flags_of(rows, resolve_thresholds(settings.review))
    console.print(table(rows, flags, f"review flags, {args.set} set, {len(rows)} photos"))
    for name, share in summary(rows, flags).items():
        console.print(f"{name}: {share:.0%}")
    measured = [r for r in rows if r.get("measure_s")]
    if measured:
        share = sum(r["measure_s"] for r in measured) / sum(r["job_s"] for r in measured)  # type: ignore[misc]
        console.print(f"measuring took {share:.2%} of these jobs' stage time")


if __name__ == "__main__":
    main()
