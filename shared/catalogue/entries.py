"""The models Darkroom knows, described without importing torch.

The API lists and validates against this; workers look up how to load an entry. An entry names
its *family*: the Celery queue it is routed to (``<queue_prefix>.<family>``), so a GPU node
subscribes only to the families whose weights it holds. Models an operator registers with
``darkroom models add`` join these at run time (see ``shared.catalogue.store``).

``urls`` are direct downloads for ``darkroom models pull``; ``source_urls`` are the pages where
a person finds the checkpoint when its publisher offers no direct link (Google Drive, Baidu).
``sha256`` is the published file's digest where known; otherwise ``models pull`` records the
digest of what it downloaded and workers verify against that from then on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.config import Acceleration
from shared.errors import InvalidRequest, ModelNotFound

OWN_ARCHITECTURES = (
    "mirnet",
    "nafnet-night",
    "nafnet-night-v2",
    "zero-dce",
    "zero-dce-pp",
    "sci",
    "iat",
)
"""Architectures implemented in ``restoration/architectures``; every other one is loaded through
spandrel."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    """low-light, deblur, denoise, derain, super-resolution or all-in-one."""
    architecture: str
    family: str
    description: str
    weights_file: str
    """File name in the model folder (``DARKROOM_MODEL_DIR``) and the model store."""
    source_urls: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    licence: str = ""
    noncommercial: bool = False
    """The weights may not be used commercially (CC BY-NC) or carry no licence at all: jobs may
    name the model only where ``DARKROOM_ALLOW_NONCOMMERCIAL_MODELS`` is on."""
    parameters: int | None = None
    """Parameters the network runs with, for the listing (published models)."""
    scale: int = 1
    tasks: tuple[str, ...] = ()
    """Per-job tasks of a multi-task model, in head order; empty for single-task models."""
    tile: int = 512
    overlap: int = 32
    precisions: tuple[str, ...] = ("fp32",)
    """Precisions it runs in; CUDA workers use the first half-precision one listed."""
    acceleration: Acceleration = "eager"
    """The fastest way to run it on CUDA, measured by ``benchmarks.acceleration`` on the GPU the
    workers use; ``DARKROOM_ACCELERATION`` overrides it (and :attr:`cpu_acceleration`) for
    every model. Every entry is still "eager": no GPU measurement exists yet."""
    cpu_acceleration: Acceleration = "eager"
    """The same on a CPU (``benchmarks.acceleration --device cpu``), where the choice differs:
    compiling pays more there (1.76x for the night model's U-Net) but costs 85 s per process
    and tile shape, which a one-photo ``darkroom submit`` would wait for, so no entry compiles
    by default; channels-last costs nothing to start and pays for the night models."""
    bundled: bool = False
    """True for Darkroom's own models, whose weights ship inside the package."""
    default_options: dict[str, Any] = field(default_factory=dict)
    arch_options: dict[str, Any] = field(default_factory=dict)
    """Keywords for the architecture's loader (Darkroom's own architectures), e.g. Zero-DCE++'s
    ``scale_factor``; empty: the architecture's defaults."""

    def check_task(self, task: str | None) -> str | None:
        """The head a job runs: its ``task`` option on a multi-task model, else None."""
        if not self.tasks:
            if task is not None and task != self.task:
                raise InvalidRequest(f"model {self.name!r} has no task {task!r}")
            return None
        if task is None:
            return self.tasks[0]
        if task not in self.tasks:
            raise InvalidRequest(
                f"model {self.name!r} has no task {task!r}; its tasks: {', '.join(self.tasks)}"
            )
        return task


_MIRNET = "https://github.com/dblasko/low-light-event-img-enhancer"
_NAFNET = "https://github.com/megvii-research/NAFNet#results-and-pre-trained-models"
_IPT = "https://github.com/huawei-noah/Pretrained-IPT#pre-trained-models"
_IPT_LICENCE = "Apache-2.0 (huawei-noah/Pretrained-IPT)"

_ENTRIES = [
    ModelEntry(
        name="darkroom-night-v1",
        task="all-in-one",
        architecture="nafnet-night",
        family="darkroom",
        description=(
            "The first version of darkroom-night (one global exposure for the whole photo), "
            "kept so results can be compared and reproduced."
        ),
        weights_file="darkroom-night-v1.safetensors",
        licence="Apache-2.0 weights trained on BSDS500 (research data): demonstration use",
        tile=1024,
        overlap=64,
        precisions=("fp32", "bf16"),
        cpu_acceleration="channels_last",
        bundled=True,
    ),
    ModelEntry(
        name="darkroom-night",
        task="all-in-one",
        architecture="nafnet-night-v2",
        family="darkroom",
        description=(
            "Darkroom's compact model for handheld night shots: lifts each region of the photo "
            "by its own light (lamps and sky keep their detail), denoises and reduces "
            "camera-shake blur in one pass; fast enough for a CPU."
        ),
        weights_file="darkroom-night-v2.safetensors",
        licence="Apache-2.0 weights trained on BSDS500 (research data): demonstration use",
        tile=1024,
        overlap=64,
        precisions=("fp32", "bf16"),
        cpu_acceleration="channels_last",
        bundled=True,
    ),
    ModelEntry(
        name="mirnet-lol",
        task="low-light",
        architecture="mirnet",
        family="mirnet",
        description="MIRNet low-light enhancer (dblasko), pretrained on the LoL dataset.",
        weights_file="mirnet-lol.pt",
        source_urls=(
            f"{_MIRNET}/releases/tag/mirnet-pretrained-LoL-1.0.0-100epochs",
            "https://huggingface.co/dblasko/mirnet-low-light-img-enhancement",
        ),
        licence="see github.com/dblasko/low-light-event-img-enhancer",
        precisions=("fp32", "fp16", "bf16"),
    ),
    ModelEntry(
        name="mirnet-finetuned",
        task="low-light",
        architecture="mirnet",
        family="mirnet",
        description="MIRNet low-light enhancer (dblasko), fine-tuned on dim event photos.",
        weights_file="mirnet-finetuned.pt",
        source_urls=(f"{_MIRNET}/releases/tag/mirnet-finetuned-1.0.0-100epochs",),
        licence="see github.com/dblasko/low-light-event-img-enhancer",
        precisions=("fp32", "fp16", "bf16"),
    ),
    ModelEntry(
        name="nafnet-gopro",
        task="deblur",
        architecture="NAFNet",
        family="spandrel",
        description="NAFNet width 32 trained on GoPro: motion deblurring.",
        weights_file="NAFNet-GoPro-width32.pth",
        source_urls=(_NAFNET,),
        licence="MIT (megvii-research/NAFNet)",
        precisions=("fp32", "bf16"),
    ),
    ModelEntry(
        name="nafnet-sidd",
        task="denoise",
        architecture="NAFNet",
        family="spandrel",
        description="NAFNet width 32 trained on SIDD: real camera noise removal.",
        weights_file="NAFNet-SIDD-width32.pth",
        source_urls=(_NAFNET,),
        licence="MIT (megvii-research/NAFNet)",
        precisions=("fp32", "bf16"),
    ),
    ModelEntry(
        name="retinexformer-lol",
        task="low-light",
        architecture="RetinexFormer",
        family="spandrel",
        description="Retinexformer trained on LOL-v1: low-light enhancement.",
        weights_file="retinexformer-LOL_v1.pth",
        source_urls=("https://github.com/caiyuanhao1998/Retinexformer#2-testing",),
        licence="MIT (caiyuanhao1998/Retinexformer)",
        precisions=("fp32", "bf16"),
    ),
    ModelEntry(
        name="scunet-real",
        task="denoise",
        architecture="SCUNet",
        family="spandrel",
        description="SCUNet (PSNR model) for real-world noise of unknown level.",
        weights_file="scunet_color_real_psnr.pth",
        source_urls=("https://github.com/cszn/SCUNet#testing",),
        urls=("https://github.com/cszn/KAIR/releases/download/v1.0/scunet_color_real_psnr.pth",),
        licence="Apache-2.0 (cszn/SCUNet)",
        precisions=("fp32", "fp16", "bf16"),
    ),
    ModelEntry(
        name="fftformer-gopro",
        task="deblur",
        architecture="FFTformer",
        family="spandrel",
        description="FFTformer trained on GoPro: strong motion deblurring, heavy.",
        weights_file="fftformer_GoPro.pth",
        source_urls=("https://github.com/kkkls/FFTformer#evaluation",),
        licence="MIT (kkkls/FFTformer)",
        precisions=("fp32", "bf16"),
        tile=256,
    ),
    *(
        ModelEntry(
            name=f"ipt-{task}",
            task=kind,
            architecture="IPT",
            family="ipt",
            description=f"IPT fine-tuned for {label} (huawei-noah/Pretrained-IPT).",
            weights_file=f"IPT_{file_task}.pt",
            source_urls=(_IPT,),
            licence=_IPT_LICENCE,
            scale=scale,
            precisions=("fp32", "bf16"),
            tile=240,
            overlap=24,
        )
        for task, kind, label, file_task, scale in (
            ("sr-x2", "super-resolution", "2x super-resolution", "sr_x2", 2),
            ("sr-x3", "super-resolution", "3x super-resolution", "sr_x3", 3),
            ("sr-x4", "super-resolution", "4x super-resolution", "sr_x4", 4),
            ("denoise-30", "denoise", "denoising at sigma 30", "denoise30", 1),
            ("denoise-50", "denoise", "denoising at sigma 50", "denoise50", 1),
            ("derain", "derain", "rain streak removal", "derain", 1),
        )
    ),
    ModelEntry(
        name="ipt-pretrain",
        task="all-in-one",
        architecture="IPT",
        family="ipt",
        description=(
            "IPT multi-task pretrained model: one network, six heads; pick one with the job "
            "option 'task'."
        ),
        weights_file="IPT_pretrain.pt",
        source_urls=(_IPT,),
        licence=_IPT_LICENCE,
        tasks=("sr-x2", "sr-x3", "sr-x4", "derain", "denoise-30", "denoise-50"),
        precisions=("fp32", "bf16"),
        tile=240,
        overlap=24,
    ),
]


# The published lightweight models: Darkroom's own implementations of their architectures
# (``restoration/architectures``) load the authors' files unchanged; URLs and digests are the files
# in the authors' repositories, checked against ../shared/reference-models by the conformance tests.
_RAW = "https://raw.githubusercontent.com"
_NC = "CC BY-NC 4.0 (authors' README): non-commercial research use only"
_CURVE_SCALE = (
    "The curve map is estimated on a copy of the photo shrunk to at most 512 px on its longer "
    "side (scale ceil(side / 512): 1 up to 512 px, 8 for a 12-megapixel photo) and applied at "
    "full resolution."
)

_LIGHTWEIGHT = [
    ModelEntry(
        name="zero-dce",
        task="low-light",
        architecture="zero-dce",
        family="light",
        description=(
            "Zero-DCE (CVPR 2020): eight pixel-wise brightening curves estimated by a 79 K "
            "parameter CNN; keeps black and white, does not denoise."
        ),
        weights_file="zero-dce_Epoch99.pth",
        source_urls=("https://github.com/Li-Chongyi/Zero-DCE",),
        urls=(f"{_RAW}/Li-Chongyi/Zero-DCE/master/Zero-DCE_code/snapshots/Epoch99.pth",),
        sha256="a4395acb874f320375d9704997cef874eaaaaa26a1777ceb29a92b70f74c3612",
        licence=_NC,
        noncommercial=True,
        parameters=79_416,
    ),
    ModelEntry(
        name="zero-dce-pp",
        task="low-light",
        architecture="zero-dce-pp",
        family="light",
        description=(
            "Zero-DCE++ (TPAMI 2021): one brightening curve map from a 10.5 K parameter CNN. "
            + _CURVE_SCALE
        ),
        weights_file="zero-dce-pp_Epoch99.pth",
        source_urls=("https://github.com/Li-Chongyi/Zero-DCE_extension",),
        urls=(
            f"{_RAW}/Li-Chongyi/Zero-DCE_extension/main/Zero-DCE%2B%2B/"
            "snapshots_Zero_DCE%2B%2B/Epoch99.pth",
        ),
        sha256="ca8855b90df9a80fa4195a831f33d3476b1964f787eb70602797c773067f3b84",
        licence=_NC,
        noncommercial=True,
        parameters=10_561,
    ),
    ModelEntry(
        name="sgz",
        task="low-light",
        architecture="zero-dce-pp",
        family="light",
        description=(
            "SGZ (semantic-guided Zero-DCE++, WACV 2022): the Zero-DCE++ network trained with a "
            "segmentation loss, MIT licensed. " + _CURVE_SCALE
        ),
        weights_file="sgz_Epoch99.pth",
        source_urls=(
            "https://github.com/ShenZheng2000/Semantic-Guided-Low-Light-Image-Enhancement",
        ),
        urls=(
            f"{_RAW}/ShenZheng2000/Semantic-Guided-Low-Light-Image-Enhancement/main/weight/"
            "Epoch99.pth",
        ),
        sha256="54d87f6f3a2b5ee495abec7e714afcdf60eaa8d15370dd500792cd4f45f442f1",
        licence="MIT (ShenZheng2000/Semantic-Guided-Low-Light-Image-Enhancement)",
        parameters=10_561,
    ),
    *(
        ModelEntry(
            name=f"sci-{variant}",
            task="low-light",
            architecture="sci",
            family="light",
            description=(
                f"SCI (CVPR 2022), {trained}: divides the photo by an illumination map from "
                "three 3x3 layers (258 parameters); the lightest model here."
            ),
            weights_file=f"sci_{variant}.pt",
            source_urls=("https://github.com/vis-opt-group/SCI",),
            urls=(f"{_RAW}/vis-opt-group/SCI/main/weights/{variant}.pt",),
            sha256=digest,
            licence="MIT (vis-opt-group/SCI)",
            parameters=258,
        )
        for variant, trained, digest in (
            (
                "medium",
                "trained on LOL and LSRW",
                "4ff1e7e66e8f18114f790e5085ca4c936f0858e329e7ad1cb65b8aa09a9c6916",
            ),
            (
                "difficult",
                "trained on DARK FACE (very dark scenes)",
                "657fa1f280cae1035df0d5cbe628e91f2d0f28660df608a3fa3f7e9a71da5a13",
            ),
        )
    ),
    *(
        ModelEntry(
            name=f"iat-{variant}",
            task="low-light",
            architecture="iat",
            family="light",
            description=(
                f"IAT (BMVC 2022), {trained}: a per-pixel multiply and add, then one gamma and "
                "colour matrix for the whole photo from a small transformer (91 K parameters)."
            ),
            weights_file=f"iat_best_Epoch_{file_variant}.pth",
            source_urls=("https://github.com/cuiziteng/Illumination-Adaptive-Transformer",),
            urls=(
                f"{_RAW}/cuiziteng/Illumination-Adaptive-Transformer/main/IAT_enhance/"
                f"best_Epoch_{file_variant}.pth",
            ),
            sha256=digest,
            licence="Apache-2.0 (cuiziteng/Illumination-Adaptive-Transformer)",
            parameters=91_154,
        )
        for variant, file_variant, trained, digest in (
            (
                "lol",
                "lol_v1",
                "trained on LOL-v1 low-light pairs",
                "6fb32236152283d3f3633ea1b79601c7e819efbf9d87d6b4767e1db0f1f3435b",
            ),
            (
                "exposure",
                "exposure",
                "trained for exposure correction (under- and over-exposed photos; it barely "
                "lifts very dark ones)",
                "15a9494582f028bef996d4af7145860eaa5d67799d2b0625ed93ff8c546ea3ee",
            ),
        )
    ),
    ModelEntry(
        name="dncnn-color",
        task="denoise",
        architecture="DnCNN",
        family="spandrel",
        description=(
            "DnCNN (TIP 2017), colour, blind: 20 plain convolutions predict the noise and "
            "subtract it (668 K parameters, KAIR format, loaded through spandrel)."
        ),
        weights_file="kair_dncnn_color_blind.pth",
        source_urls=("https://github.com/zhengdihan/Unsupervised_denoising",),
        urls=(f"{_RAW}/zhengdihan/Unsupervised_denoising/master/model_zoo/dncnn_color_blind.pth",),
        sha256="dfe11a6b703304df82cdf236f431fc6492766c7b9119d97e943edeb392c710a3",
        licence=(
            "no licence stated (zhengdihan/Unsupervised_denoising, a copy of KAIR's file): "
            "treated as non-commercial"
        ),
        noncommercial=True,
        parameters=668_227,
        precisions=("fp32", "bf16"),
    ),
]

CATALOGUE: dict[str, ModelEntry] = {entry.name: entry for entry in (*_ENTRIES, *_LIGHTWEIGHT)}

DEFAULT_MODEL = "darkroom-night"

PRESETS: dict[str, str] = {
    "handheld-night": "retinexformer-lol+nafnet-gopro+scunet-real",
    "light-curve": "sgz+dncnn-color",
    "light-retinex": "sci-medium+dncnn-color",
}
"""Named chains. A chain is steps joined by ``+``, each ``model`` or ``model:task``, run one
after another in one worker on the decoded pixels (no re-encoding between steps)."""


def get_entry(name: str) -> ModelEntry:
    """A catalogue entry; models registered at run time are resolved by ``ModelStore``."""
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise ModelNotFound(f"unknown model {name!r}; known models: {known}") from None
