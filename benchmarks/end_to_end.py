"""One 12-megapixel JPEG through ``darkroom submit`` (embedded) beside the model alone on it.

Each row runs in fresh processes, because malloc's set-up is process-wide
(``restoration.device.allocator``):

* **end to end**: ``darkroom submit photo.jpg --out DIR`` with a fresh ``DARKROOM_HOME`` (SQLite,
  a local object folder, the job run in that process), wall time from start to exit, and the
  user and system CPU seconds of that process;
* **model alone**: the same photo decoded, its tiles cut as the worker cuts them and the model's
  passes run on them with nothing else (``benchmarks.models.ModelPass``), after one batch of
  tiles as a warm-up.

The ratio ``model / end to end`` says how much of a user's wait is the model; the rest is
start-up, loading, decoding, the whole-photo passes the model needs, encoding and bookkeeping.
The job's own stage timings (read back from the run's SQLite database) split that rest: the
``restore`` stage (the model plus its whole-photo passes and the tiling), the other stages
(download, decode, encode, upload), and what lies outside the job (the process starting,
imports, the model loading, the database set up).
Allocators compared: ``system`` (glibc's defaults), ``keep`` (Darkroom's default, mallopt at the
first model load) and jemalloc through ``LD_PRELOAD`` where the library is installed. Run::

    .venv/bin/python -m benchmarks.end_to_end [--models darkroom-night,darkroom-night-v1]
        [--allocators system,keep,jemalloc] [--width 4000 --height 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.stack import jpeg

JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
DARKROOM = Path(sys.executable).with_name("darkroom")

MODEL_ALONE = """
import json, sys, numpy as np, torch
from PIL import Image
from benchmarks.models import ModelPass
from shared.catalogue import BUNDLED_WEIGHTS, CATALOGUE
from shared.config import Settings
from restoration.loading import load_restorer
entry = CATALOGUE[sys.argv[1]]
settings = Settings()
restorer = load_restorer(entry, BUNDLED_WEIGHTS / entry.weights_file, torch.device("cpu"), settings)
pixels = np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.float32) / 255.0
image = torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()
model = ModelPass(restorer, image)
with torch.inference_mode():  # warm-up: the first batch of tiles (allocator, caches)
    restorer.forward_for(image)[1](model.batches[0], None)
print(json.dumps({"seconds": model.seconds(1)}))
"""


@dataclass(frozen=True)
class Row:
    model: str
    allocator: str
    wall_s: float
    user_s: float
    system_s: float
    model_s: float
    restore_s: float
    """The job's restore stage: the model, its whole-photo passes and the tiling."""
    stages_s: float
    """The job's other stages: download, decode, encode and upload."""

    @property
    def ratio(self) -> float:
        return self.model_s / self.wall_s


def environment(allocator: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "LD_PRELOAD"))}
    env = {
        k: v for k, v in env.items() if not k.startswith("DARKROOM_") or k == "DARKROOM_SHARED_DIR"
    }
    env["DARKROOM_HOME"] = str(home)
    env["DARKROOM_CPU_ALLOCATOR"] = "keep" if allocator == "keep" else "system"
    if allocator == "jemalloc":
        env["LD_PRELOAD"] = str(JEMALLOC)
    return env


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall, user and system seconds of one child process, and its standard output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, done.stdout


def job_stages(home: Path) -> tuple[float, float]:
    """(restore, the other stages) in seconds, of the one job the run recorded."""
    with sqlite3.connect(home / "darkroom.db") as db:
        row = db.execute(
            "SELECT restore_s, download_s + decode_s + encode_s + upload_s FROM jobs"
        ).fetchone()
    return float(row[0]), float(row[1])


def measure(model: str, allocator: str, photo: Path, scratch: Path) -> Row:
    home = scratch / f"{model}-{allocator}"
    env = environment(allocator, home)
    command = [str(DARKROOM), "submit", str(photo), "--model", model, "--out", str(home / "out")]
    wall, user, system, _ = timed(command, env)
    if not any((home / "out").rglob("*.jpg")):
        raise SystemExit(f"darkroom submit wrote no result for {model} ({allocator})")
    _, _, _, out = timed([sys.executable, "-c", MODEL_ALONE, model, str(photo)], env)
    model_s = float(json.loads(out.strip().splitlines()[-1])["seconds"])
    return Row(model, allocator, wall, user, system, model_s, *job_stages(home))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="darkroom-night,darkroom-night-v1")
    parser.add_argument("--allocators", default="system,keep,jemalloc")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()
    allocators = [a for a in args.allocators.split(",") if a != "jemalloc" or JEMALLOC.exists()]
    console = Console(width=120)
    table = Table(title=f"{args.width}x{args.height} JPEG on CPU ({os.cpu_count()} cores)")
    columns = ("model", "allocator", "end to end s", "user s", "system s", "model alone s")
    for column in (*columns, "restore stage s", "other stages s", "outside the job s"):
        table.add_column(column)
    table.add_column("model / end to end")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        photo = scratch / "photo.jpg"
        photo.write_bytes(jpeg(args.width, args.height))
        for model in args.models.split(","):
            for allocator in allocators:
                row = measure(model, allocator, photo, scratch)
                console.print(row)
                table.add_row(
                    row.model,
                    row.allocator,
                    f"{row.wall_s:.1f}",
                    f"{row.user_s:.1f}",
                    f"{row.system_s:.1f}",
                    f"{row.model_s:.1f}",
                    f"{row.restore_s:.1f}",
                    f"{row.stages_s:.1f}",
                    f"{row.wall_s - row.restore_s - row.stages_s:.1f}",
                    f"{row.ratio:.2f}",
                )
    console.print(table)


if __name__ == "__main__":
    main()
