"""The before/after pictures of docs/how-it-works.md, made from the evaluation sets.

    make pictures            (or: .venv/bin/python scripts/how-it-works-pictures.py [--out DIR])

Every panel is a real output: the photo goes through the worker's restorer cache (the path jobs
take) with the published weights of ``../shared/reference-models/weights`` (or
``--weights DIR``) and Darkroom's bundled ones. Nothing is drawn by hand. Each picture is a JPEG
row small enough to commit (under 200 KB). Non-commercial models run here because the pictures
are documentation of research use; jobs still need DARKROOM_ALLOW_NONCOMMERCIAL_MODELS.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from evaluation.contact_sheet import side_by_side, thumbnail, with_text  # noqa: E402
from evaluation.real_dim import list_photos, read_photo  # noqa: E402
from evaluation.reference_sets import load_set  # noqa: E402
from restoration.cache import RestorerCache  # noqa: E402
from restoration.restorers import chain_restore  # noqa: E402
from shared.catalogue import ModelStore  # noqa: E402
from shared.config import Settings, get_settings  # noqa: E402
from shared.storage import make_storage  # noqa: E402

PANEL = 300
"""Long side of every panel, in pixels."""
MAX_BYTES = 200_000

Restore = Callable[[np.ndarray], np.ndarray]

CROP = 240
"""Side of the 100 % crops, where noise and its removal are visible."""

PICTURES: list[tuple[str, str, str, list[str], tuple[float, float] | None]] = [
    # file, source ("set:photo"), title, models (the input comes first, a reference last),
    # and where a 100 % crop is taken (fractions of height and width; None: the whole photo)
    (
        "curves.jpg",
        "lol-sample:2",
        "LoL photo 2: exposure curves (Zero-DCE, Zero-DCE++, SGZ) next to darkroom-night",
        ["zero-dce", "zero-dce-pp", "sgz", "darkroom-night"],
        None,
    ),
    (
        "retinex-transformer.jpg",
        "lol-sample:2",
        "LoL photo 2: Retinex illumination (SCI) and a transformer (IAT)",
        ["sci-medium", "sci-difficult", "iat-lol", "iat-exposure"],
        None,
    ),
    (
        "denoise.jpg",
        "kodak24-handheld-night:kodim05",
        "Kodak 05, handheld-night degradation: a light chain (curves, then DnCNN) vs. one model",
        ["sgz", "light-curve", "light-retinex", "darkroom-night"],
        None,
    ),
    (
        "denoise-crop.jpg",
        "real-dim:exdark/2015_02057",
        "100 % crops of the ExDark photo: curves lift the noise with the light; DnCNN after them",
        ["sgz", "light-curve", "sci-medium", "light-retinex", "darkroom-night"],
        (0.55, 0.12),
    ),
    (
        "real-night.jpg",
        "real-dim:exdark/2015_02057",
        "A real night photo (ExDark): which model keeps the lamps and lifts the street",
        ["zero-dce-pp", "sci-medium", "iat-lol", "light-curve", "darkroom-night"],
        None,
    ),
]


def source(spec: str, shared: Path, settings: Settings) -> tuple[np.ndarray, np.ndarray | None]:
    """The photo named ``set:photo`` and, for the reference sets, its clean reference."""
    set_name, _, photo = spec.partition(":")
    if set_name == "real-dim":
        chosen = [p for p in list_photos(shared) if p.name == photo]
        if not chosen:
            raise SystemExit(f"no real-dim photo {photo!r} under {shared}")
        return read_photo(chosen[0], settings.max_pixels), None
    pairs = [pair for pair in load_set(set_name, shared) if pair.name == photo]
    if not pairs:
        raise SystemExit(f"no photo {photo!r} in {set_name}")
    return pairs[0].degraded, pairs[0].reference


def view(pixels: np.ndarray, crop: tuple[float, float] | None) -> Image.Image:
    """A panel: the whole photo shrunk to :data:`PANEL`, or a 100 % crop at ``crop``."""
    if crop is None:
        return thumbnail(pixels, PANEL)
    height, width = pixels.shape[:2]
    top = min(int(crop[0] * height), max(0, height - CROP))
    left = min(int(crop[1] * width), max(0, width - CROP))
    return thumbnail(pixels[top : top + CROP, left : left + CROP], CROP)


def jpeg(image: Image.Image) -> bytes:
    """The smallest quality step from 88 down that fits :data:`MAX_BYTES`."""
    for quality in range(88, 40, -6):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, optimize=True)
        if buffer.tell() < MAX_BYTES:
            return buffer.getvalue()
    raise SystemExit("picture does not fit in 200 KB even at quality 40")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "pictures")
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()
    base = get_settings()
    weights = args.weights or base.shared_dir / "reference-models" / "weights"
    settings = base.model_copy(
        update={"model_dir": weights, "allow_noncommercial_models": True, "device": "cpu"}
    )
    store = ModelStore(settings, make_storage(settings))
    cache = RestorerCache(settings, store)
    restores: dict[str, Restore] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for filename, spec, title, models, crop in PICTURES:
        photo, reference = source(spec, settings.shared_dir, settings)
        panels = [with_text(view(photo, crop), ["input"])]
        for model in models:
            if model not in restores:
                steps = [(cache.get(entry), task) for entry, task in store.chain(model)]
                restores[model] = chain_restore(steps)
            panels.append(with_text(view(restores[model](photo), crop), [model]))
        if reference is not None:
            panels.append(with_text(view(reference, crop), ["reference"]))
        data = jpeg(side_by_side(panels, title))
        (args.out / filename).write_bytes(data)
        print(f"{args.out / filename}: {len(data) // 1000} KB, {', '.join(models)}")


if __name__ == "__main__":
    main()
