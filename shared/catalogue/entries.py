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

OWN_ARCHITECTURES = ("mirnet", "nafnet-night", "nafnet-night-v2")
"""Architectures implemented in ``workers/archs``; every other one is loaded through spandrel."""


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

CATALOGUE: dict[str, ModelEntry] = {entry.name: entry for entry in _ENTRIES}

DEFAULT_MODEL = "darkroom-night"

PRESETS: dict[str, str] = {
    "handheld-night": "retinexformer-lol+nafnet-gopro+scunet-real",
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
