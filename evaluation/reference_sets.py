"""How much a model recovers, next to what one gets without Darkroom.

Each evaluation set pairs degraded inputs with clean references. Every method runs on the same
images and is scored with scikit-image's PSNR and SSIM: the degraded input itself, a classical
baseline built from scikit-image's own restoration functions, and the model through the same
restorer the workers use. Real night photos, which have no references, are the ``real-dim`` set
of ``evaluation.real_dim``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from degradation.recipe import degrade_eval_set

Restore = Callable[[np.ndarray], np.ndarray]

KODAK_SEED = 20261125
"""Fixed seed of the ``kodak24-handheld-night`` set: never change it, or numbers stop comparing."""

SETS = ("kodak24-handheld-night", "lol-sample")


@dataclass(frozen=True)
class Pair:
    name: str
    degraded: np.ndarray
    reference: np.ndarray


@dataclass(frozen=True)
class Score:
    method: str
    psnr: float
    ssim: float
    seconds_per_image: float
    images: int


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def load_set(name: str, shared_dir: Path, limit: int | None = None) -> list[Pair]:
    if name == "kodak24-handheld-night":
        paths = sorted((shared_dir / "eval" / "kodak24").glob("*.png"))[:limit]
        clean = [_read(p) for p in paths]
        degraded = degrade_eval_set(clean, seed=KODAK_SEED)
        return [Pair(p.stem, d, c) for p, (d, _), c in zip(paths, degraded, clean, strict=True)]
    if name == "lol-sample":
        lows = sorted((shared_dir / "eval" / "lol-sample" / "low").glob("*.png"))[:limit]
        return [Pair(p.stem, _read(p), _read(p.parent.parent / "high" / p.name)) for p in lows]
    raise ValueError(f"unknown evaluation set {name!r}; known: {', '.join(SETS)}")


def classical_baseline(image: np.ndarray) -> np.ndarray:
    """Auto-exposure, non-local-means denoising and Richardson-Lucy deconvolution, all
    scikit-image.

    Blind: the blur kernel is unknown to it (as to the model), so deconvolution uses a small
    Gaussian PSF, the usual generic choice.
    """
    from skimage import exposure, restoration

    # Exposure: stretch the range, then a gamma that puts the mean at mid-grey.
    low, high = np.percentile(image, (0.5, 99.8))
    stretched = exposure.rescale_intensity(
        image, in_range=(low, max(high, low + 1e-3)), out_range=(0.0, 1.0)
    )
    mean = float(np.clip(stretched.mean(), 1e-3, 0.99))
    brightened = exposure.adjust_gamma(stretched, gamma=np.log(0.45) / np.log(mean))
    sigma = float(np.mean(restoration.estimate_sigma(brightened, channel_axis=-1)))
    denoised = restoration.denoise_nl_means(
        brightened,
        h=0.8 * sigma,
        sigma=sigma,
        patch_size=5,
        patch_distance=6,
        fast_mode=True,
        channel_axis=-1,
    )
    grid = np.arange(-3, 4)
    psf = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 1.0**2))
    psf /= psf.sum()
    deblurred = np.stack(
        [restoration.richardson_lucy(denoised[..., c], psf, num_iter=8) for c in range(3)],
        axis=-1,
    )
    return np.clip(deblurred, 0.0, 1.0).astype(np.float32)


def score(
    method: str,
    pairs: list[Pair],
    restore: Callable[[np.ndarray], np.ndarray],
    save_dir: Path | None = None,
) -> Score:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnrs, ssims, seconds = [], [], 0.0
    for pair in pairs:
        start = time.perf_counter()
        output = np.clip(restore(pair.degraded), 0.0, 1.0)
        seconds += time.perf_counter() - start
        psnrs.append(peak_signal_noise_ratio(pair.reference, output, data_range=1.0))
        ssims.append(structural_similarity(pair.reference, output, channel_axis=-1, data_range=1.0))
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray((output * 255 + 0.5).astype(np.uint8)).save(
                save_dir / f"{pair.name}-{method}.png"
            )
    return Score(
        method, float(np.mean(psnrs)), float(np.mean(ssims)), seconds / len(pairs), len(pairs)
    )


def evaluate(
    pairs: list[Pair],
    models: Sequence[tuple[str, Restore]],
    save_dir: Path | None = None,
) -> Iterator[Score]:
    """Scores for the degraded input, the classical baseline and each model, in that order."""
    yield score("input", pairs, lambda image: image, save_dir)
    yield score("classical", pairs, classical_baseline, save_dir)
    for name, restore in models:
        yield score(name, pairs, restore, save_dir)
