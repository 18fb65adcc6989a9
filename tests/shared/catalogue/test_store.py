"""The model store's messages, as the person whose job failed reads them."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from shared.catalogue import CATALOGUE, PRESETS, ModelEntry, ModelStore
from shared.config import Settings
from shared.errors import ModelNotAllowed, ModelUnavailable
from shared.storage import LocalStorage


def _unavailable(
    store: ModelStore, entry: ModelEntry, caplog: pytest.LogCaptureFixture
) -> tuple[str, str]:
    """What the tenant reads (the error's message, stored with the failed job) and what the
    operator reads (the log) when a worker asks for ``entry``'s weights."""
    with (
        caplog.at_level(logging.ERROR, logger="shared.catalogue.store"),
        pytest.raises(ModelUnavailable) as refused,
    ):
        store.local_weights(entry)
    return refused.value.message, caplog.text


def _keeps_the_server_to_itself(message: str, tmp_path: Path) -> None:
    assert str(tmp_path) not in message and "/" not in message  # no path, no URL
    assert "DARKROOM_" not in message and "darkroom models" not in message


def test_missing_weights_name_the_model_to_the_tenant_and_the_folder_to_the_operator(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path)
    store = ModelStore(settings, LocalStorage(tmp_path / "objects"))
    message, logged = _unavailable(store, CATALOGUE["mirnet-lol"], caplog)
    assert "'mirnet-lol'" in message and "not installed" in message
    _keeps_the_server_to_itself(message, tmp_path)
    path = str((tmp_path / "models" / "mirnet-lol.pt").resolve())
    assert logged.count(path) == 1
    assert "darkroom models pull mirnet-lol" in logged
    assert "low-light-event-img-enhancer" in logged
    assert "DARKROOM_MODEL_DIR" in logged


def test_with_a_model_bucket_the_operator_reads_the_bucket_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path, model_bucket="darkroom-models")
    store = ModelStore(settings, LocalStorage(tmp_path / "objects"))
    message, logged = _unavailable(store, CATALOGUE["mirnet-lol"], caplog)
    _keeps_the_server_to_itself(message, tmp_path)
    assert "darkroom-models" not in message
    assert logged.count("s3://darkroom-models/models/mirnet-lol.pt") == 1
    assert logged.count(str((tmp_path / "models" / "mirnet-lol.pt").resolve())) == 1


def test_damaged_weights_are_unavailable_without_saying_where_they_are(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path)
    store = ModelStore(settings, LocalStorage(tmp_path / "objects"))
    entry = dataclasses.replace(CATALOGUE["mirnet-lol"], sha256="0" * 64)
    local = tmp_path / "models" / entry.weights_file
    local.parent.mkdir()
    local.write_bytes(b"not the published checkpoint")
    message, logged = _unavailable(store, entry, caplog)
    assert "'mirnet-lol'" in message
    _keeps_the_server_to_itself(message, tmp_path)
    assert str(local) in logged and "darkroom models pull mirnet-lol" in logged


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
