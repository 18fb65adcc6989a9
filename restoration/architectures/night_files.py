"""The night models' weight files, v1 and v2 alike: safetensors whose metadata holds the model's
name, version and hyper-parameters (``config``), so a file alone rebuilds its network."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch


class Configured(Protocol):
    def config(self) -> dict[str, Any]: ...

    def state_dict(self) -> Mapping[str, torch.Tensor]: ...


def save(
    model: Configured,
    path: str | Path,
    *,
    name: str,
    version: str,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as safetensors with ``config``/``name``/``version`` (and extras) metadata.

    Extra values that are not strings are stored as JSON, since safetensors metadata is str->str.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, str] = {
        "name": name,
        "version": str(version),
        "config": json.dumps(model.config()),
    }
    for key, value in (extra_metadata or {}).items():
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=meta)
    return path


def read(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The file's metadata and tensors; ``ValueError`` naming the file when it is not a readable
    safetensors file (a missing file stays ``FileNotFoundError``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device=str(map_location))
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    return meta, state


def config_of(meta: Mapping[str, str], known: tuple[str, ...]) -> dict[str, Any]:
    """The hyper-parameters in the metadata: a JSON object of known keys, else ``TypeError``."""
    cfg = json.loads(meta["config"])
    if not isinstance(cfg, dict):
        raise TypeError("config is not a JSON object")
    unknown = set(cfg) - set(known)
    if unknown:
        raise TypeError(f"unknown hyper-parameters {sorted(unknown)}")
    return cfg
