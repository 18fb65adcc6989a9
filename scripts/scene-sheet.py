"""Contact sheet of night-scene training pairs, and how long one pair takes to make.

    python scripts/scene-sheet.py [--seed 0] [--rows 6] [--out /tmp/scene-sheet.png] [--time 40]

Each row is one BSDS500 train photo: the degraded input | its target. ``--time N`` also degrades N
whole photos on one thread and prints the mean milliseconds per image (training degrades whole
481 x 321 photos on the fly, so this is the figure that bounds a DataLoader worker).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as in a DataLoader worker
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from degradation.night_scenes import degrade_scene  # noqa: E402
from shared.config import get_settings  # noqa: E402


def _photos(folder: Path, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    files = sorted(folder.glob("*.jpg"))
    picks = rng.choice(len(files), size=min(count, len(files)), replace=False)
    out = []
    for i in picks:
        with Image.open(files[int(i)]) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return out


def sheet(photos: list[np.ndarray], seed: int) -> tuple[np.ndarray, list[str]]:
    """Rows of input | target on white, each row as tall as its photo (portrait ones upright)."""
    cell, gap = max(max(p.shape[:2]) for p in photos), 6
    rows, notes = [], []
    for i, photo in enumerate(photos):
        low, target, params = degrade_scene(photo, np.random.default_rng([seed, i]))
        s = params.summary()
        notes.append(
            f"row {i}: points={s['point_lights_count']} areas={s['area_lights_count']} "
            f"sky={s['sky_gain']:.1f} lamps={s['emitters_count']} median={s['median_luma']:.4f} "
            f"kappa={s['kappa']:.2f} cast={s['ambient_cast']}:{s['ambient_cast_strength']:.2f} "
            f"awb={s['awb_correction']:.2f} blur={s['kernel_size']} well={s['full_well']:.0f} "
            f"clip={(low >= 0.999).mean():.4f} low/target luma="
            f"{low.mean():.3f}/{target.mean():.3f}"
        )
        row = np.ones((low.shape[0], 2 * cell + gap, 3), dtype=np.float32)
        for j, img in enumerate((low, target)):
            h, w = img.shape[:2]
            row[:h, j * (cell + gap) : j * (cell + gap) + w] = img
        rows.append(row)
    spacer = np.ones((gap, rows[0].shape[1], 3), dtype=np.float32)
    stacked = np.concatenate([r for row in rows for r in (row, spacer)][:-1], axis=0)
    return np.clip(np.rint(stacked * 255), 0, 255).astype(np.uint8), notes


def time_per_image(photos: list[np.ndarray], seed: int) -> tuple[float, float]:
    """Mean wall and CPU milliseconds per photo (they differ when other work shares the cores)."""
    rng = np.random.default_rng(seed)
    degrade_scene(photos[0], rng)  # warm caches and lazy imports
    wall, cpu = time.perf_counter(), time.process_time()
    for photo in photos:
        degrade_scene(photo, rng)
    n = len(photos)
    return (time.perf_counter() - wall) / n * 1e3, (time.process_time() - cpu) / n * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = get_settings().shared_dir
    parser.add_argument("--data", type=Path, default=shared / "data" / "bsds500" / "train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("/tmp/scene-sheet.png"))
    parser.add_argument("--time", type=int, default=0, metavar="N")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    image, notes = sheet(_photos(args.data, args.rows, rng), args.seed)
    Image.fromarray(image).save(args.out)
    print("\n".join(notes))
    print(f"wrote {args.out}")
    if args.time:
        wall, cpu = time_per_image(_photos(args.data, args.time, rng), args.seed)
        print(f"{wall:.1f} ms wall, {cpu:.1f} ms CPU per image ({args.time} photos, one thread)")


if __name__ == "__main__":
    main()
