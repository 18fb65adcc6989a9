"""The models Darkroom knows (``entries``), where their weights live (``store``), and the
weights of Darkroom's own models, which ship inside the package (``weights/``).

No torch here: the API lists and validates models through this package.
"""

from shared.catalogue.entries import (
    CATALOGUE,
    DEFAULT_MODEL,
    OWN_ARCHITECTURES,
    PRESETS,
    ModelEntry,
    get_entry,
)
from shared.catalogue.store import BUNDLED_WEIGHTS, ModelStore, sha256_file, validate_name

__all__ = [
    "BUNDLED_WEIGHTS",
    "CATALOGUE",
    "DEFAULT_MODEL",
    "OWN_ARCHITECTURES",
    "PRESETS",
    "ModelEntry",
    "ModelStore",
    "get_entry",
    "sha256_file",
    "validate_name",
]
