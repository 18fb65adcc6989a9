"""The models Darkroom can run, described without importing torch.

The API lists and validates against this; workers look up how to load an entry. An entry names
its *family*: the Celery queue it is routed to (``<queue_prefix>.<family>``), so a GPU node
subscribes only to the families whose weights it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.errors import ModelNotFound


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    architecture: str
    family: str
    description: str
    weights_file: str
    """File name looked up in the model directory (``DARKROOM_MODEL_DIR``) or model store."""
    source_urls: tuple[str, ...] = ()
    """Where an operator downloads the published checkpoint."""
    licence: str = ""
    bundled: bool = False
    """True for Darkroom's own models, whose weights ship inside the package."""
    default_options: dict[str, Any] = field(default_factory=dict)


_MIRNET_RELEASES = "https://github.com/dblasko/low-light-event-img-enhancer/releases/tag"

CATALOGUE: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="darkroom-night",
            task="all-in-one",
            architecture="nafnet-night",
            family="darkroom",
            description=(
                "Darkroom's compact model for handheld night shots: brightens, denoises and "
                "reduces camera-shake blur in one pass; runs on CPU."
            ),
            weights_file="darkroom-night-v1.safetensors",
            licence="Apache-2.0 (trained on BSDS500; for demonstration and evaluation)",
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
                f"{_MIRNET_RELEASES}/mirnet-pretrained-LoL-1.0.0-100epochs",
                "https://huggingface.co/dblasko/mirnet-low-light-img-enhancement",
            ),
            licence="see the upstream repository",
        ),
        ModelEntry(
            name="mirnet-finetuned",
            task="low-light",
            architecture="mirnet",
            family="mirnet",
            description="MIRNet low-light enhancer (dblasko), fine-tuned on dim event photos.",
            weights_file="mirnet-finetuned.pt",
            source_urls=(f"{_MIRNET_RELEASES}/mirnet-finetuned-1.0.0-100epochs",),
            licence="see the upstream repository",
        ),
    )
}

DEFAULT_MODEL = "darkroom-night"


def get_entry(name: str) -> ModelEntry:
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise ModelNotFound(f"unknown model {name!r}; known models: {known}") from None
