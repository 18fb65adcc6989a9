"""The model store's messages, as the person whose job failed reads them."""

from __future__ import annotations

from pathlib import Path

from shared.catalogue import CATALOGUE, ModelStore
from shared.catalogue.store import unavailable
from shared.config import Settings
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
