"""The model store's messages, as the person whose job failed reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.catalogue import CATALOGUE, PRESETS, ModelStore
from shared.catalogue.store import unavailable
from shared.config import Settings
from shared.errors import ModelNotAllowed
from shared.storage import LocalStorage


def test_missing_weights_name_the_folder_once(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    store = ModelStore(settings, LocalStorage(tmp_path / "objects"))
    message = unavailable(CATALOGUE["mirnet-lol"], store).message
    path = str((tmp_path / "models" / "mirnet-lol.pt").resolve())
    assert message.count(path) == 1
    assert "darkroom models pull mirnet-lol" in message
    assert "low-light-event-img-enhancer" in message
    assert "DARKROOM_MODEL_DIR" in message


def test_with_a_model_bucket_the_bucket_is_named_too(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, model_bucket="darkroom-models")
    store = ModelStore(settings, LocalStorage(tmp_path / "objects"))
    message = unavailable(CATALOGUE["mirnet-lol"], store).message
    assert message.count("s3://darkroom-models/models/mirnet-lol.pt") == 1
    assert message.count(str((tmp_path / "models" / "mirnet-lol.pt").resolve())) == 1


def test_non_commercial_models_are_refused_unless_the_operator_allows_them(
    tmp_path: Path,
) -> None:
    """Every way a job names a model goes through ``chain``: a single model, a preset whose
    steps include one, or a chain written out."""
    refusing = ModelStore(Settings(home=tmp_path), LocalStorage(tmp_path / "objects"))
    for model in ("zero-dce", "light-curve", "sgz+dncnn-color"):
        with pytest.raises(ModelNotAllowed) as refused:
            refusing.chain(model)
        assert "DARKROOM_ALLOW_NONCOMMERCIAL_MODELS=true" in refused.value.message
        assert "non-commercial" in refused.value.message or "commercially" in refused.value.message
    assert [entry.name for entry, _ in refusing.chain("sgz")] == ["sgz"]
    assert not refusing.allowed(CATALOGUE["zero-dce"]) and refusing.allowed(CATALOGUE["sgz"])

    allowing = ModelStore(
        Settings(home=tmp_path, allow_noncommercial_models=True), LocalStorage(tmp_path / "o")
    )
    steps = allowing.chain("light-curve")
    assert [entry.name for entry, _ in steps] == ["sgz", "dncnn-color"]


def test_every_preset_names_catalogue_models() -> None:
    for name, chain in PRESETS.items():
        for step in chain.split("+"):
            assert step.partition(":")[0] in CATALOGUE, (name, step)
