"""What measuring a job costs: the quality signals and previews of one 12-megapixel photo beside
the rest of its job, in one run.

One dim 12-MP JPEG goes through ``darkroom submit``'s embedded pipeline (SQLite, a local folder,
this process) with the chosen model, and its stage timings are printed. The worker measures
beside encoding, on a thread of its own (``workers.pipeline``), so what a job gains is not the
measuring's own seconds but how much longer encoding and measuring together take than encoding
alone: the two are timed side by side, ``--repeat`` times each, alternating, on the job's
decoded photo and its result; the gain is printed as a share of the job's stage time (goal: at
most 3 %), with the measuring's own seconds beside it. Run::

    .venv/bin/python -m benchmarks.quality_cost [--model darkroom-night]
        [--width 4000 --height 3000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.embedded import embedded_home
from benchmarks.stack import jpeg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="darkroom-night")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    photo = jpeg(args.width, args.height)
    timings, wall, result, max_pixels = one_job(photo, args.model)
    runs = side_by_side(photo, result, max_pixels, args.repeat)
    report(args, timings, wall, runs)


def one_job(photo: bytes, model: str) -> tuple[dict[str, float], float, bytes, int]:
    """One embedded job of ``photo``: its stage timings, its wall time, its result's bytes and
    the pixel budget it was decoded under."""
    from shared import jobs
    from shared.catalogue import ModelStore
    from shared.db.engine import session_factory
    from shared.queue.dispatch import NoDispatch
    from workers.context import WorkerContext
    from workers.pipeline import run_inline

    with tempfile.TemporaryDirectory() as home:
        settings, storage = embedded_home(Path(home))
        storage.put(settings.input_bucket, "cost/photo.jpg", photo)
        sessions = session_factory(settings.database_url)
        with sessions() as session:
            job, _ = jobs.submit_job(
                session,
                settings,
                NoDispatch(),
                ModelStore(settings, storage),
                model=model,
                input_key="cost/photo.jpg",
            )
            job_id = job.id
        started = time.perf_counter()
        run_inline(job_id, WorkerContext.build(settings))
        wall = time.perf_counter() - started
        with sessions() as session:
            done = jobs.get_job(session, job_id)
            timings = {k: v for k, v in done.timings.items() if k != "device" and v is not None}
            result = storage.get(done.output_bucket or "", done.output_key or "")
    return timings, wall, result, settings.max_pixels


def side_by_side(
    photo: bytes, result: bytes, max_pixels: int, repeat: int
) -> dict[str, list[float]]:
    """Encoding alone, encoding with measuring beside it, measuring alone: seconds per run,
    the three alternating so load changes touch each alike."""
    from imaging import quality
    from imaging.decoding import decode
    from imaging.encoding import encode

    decoded = decode(photo, max_pixels=max_pixels)
    restored = decode(result, max_pixels=max_pixels).pixels

    def encode_alone() -> None:
        encode(decoded, restored)

    def encode_and_measure() -> None:
        with ThreadPoolExecutor(1) as beside:
            measuring = beside.submit(quality.measure, decoded.pixels, restored)
            encode(decoded, restored)
            measuring.result()

    def measure_alone() -> None:
        quality.measure(decoded.pixels, restored)

    runs: dict[str, list[float]] = {"encode": [], "encode + measure": [], "measure": []}
    for _ in range(repeat):
        for name, run in zip(runs, (encode_alone, encode_and_measure, measure_alone), strict=True):
            start = time.perf_counter()
            run()
            runs[name].append(time.perf_counter() - start)
    return runs


def report(
    args: argparse.Namespace,
    timings: dict[str, float],
    wall: float,
    runs: dict[str, list[float]],
) -> None:
    console = Console()
    stages = sum(v for k, v in timings.items() if k != "measure")
    table = Table("stage", "seconds", title=f"one {args.width}x{args.height} job, {args.model}")
    for name, seconds in timings.items():
        note = " (beside encode)" if name == "measure" else ""
        table.add_row(name + note, f"{seconds:.3f}")
    table.add_row("all stages but measure", f"{stages:.3f}")
    console.print(table)
    console.print(f"job wall time (claim to record): {wall:.1f} s")
    side = Table("side by side", "median ms", "min", "max", title=f"{args.repeat} runs each")
    for name, times in runs.items():
        side.add_row(
            name,
            f"{statistics.median(times) * 1000:.0f}",
            f"{min(times) * 1000:.0f}",
            f"{max(times) * 1000:.0f}",
        )
    console.print(side)
    gain = statistics.median(runs["encode + measure"]) - statistics.median(runs["encode"])
    own = statistics.median(runs["measure"])
    console.print(
        f"a job gains {gain * 1000:.0f} ms from measuring: {gain / stages:.2%} of its stage time "
        f"(measuring alone: {own * 1000:.0f} ms, {own / stages:.2%})"
    )


if __name__ == "__main__":
    main()
