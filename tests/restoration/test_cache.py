"""The restorer cache shared by a worker's pool threads: one load per model, and no job of a
loaded model waiting for another model's load (a warm-up compile takes minutes on a GPU)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from restoration import cache as restorer_cache
from restoration.cache import RestorerCache
from shared.catalogue import CATALOGUE, ModelEntry, ModelStore
from shared.config import Settings
from shared.storage import LocalStorage

WAIT_S = 30.0


@dataclass
class _Loaded:
    name: str
    nbytes: int = 0


@pytest.fixture
def cache(tmp_path: Path) -> RestorerCache:
    settings = Settings(home=tmp_path, model_dir=tmp_path / "models")
    settings.model_dir.mkdir(parents=True)  # type: ignore[union-attr]
    for name in ("nafnet-gopro", "nafnet-sidd"):
        (settings.model_dir / CATALOGUE[name].weights_file).write_bytes(b"weights")  # type: ignore[operator]
    return RestorerCache(settings, ModelStore(settings, LocalStorage(tmp_path / "objects")))


def test_a_loaded_model_never_waits_for_another_models_load(
    cache: RestorerCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_started, release = threading.Event(), threading.Event()
    loads: list[str] = []

    def load(entry: ModelEntry, path: Path, device: object, settings: Settings) -> _Loaded:
        loads.append(entry.name)
        if entry.name == "nafnet-sidd":
            slow_started.set()
            release.wait(WAIT_S)
        return _Loaded(entry.name)

    monkeypatch.setattr(restorer_cache, "load_restorer", load)
    fast, slow = CATALOGUE["nafnet-gopro"], CATALOGUE["nafnet-sidd"]
    cache.get(fast)
    with ThreadPoolExecutor(3) as pool:
        loading = [pool.submit(cache.get, slow) for _ in range(2)]
        assert slow_started.wait(WAIT_S)
        # Returned while the other load is still held: before the fix it waited for it.
        assert pool.submit(cache.get, fast).result(WAIT_S).name == "nafnet-gopro"
        assert not release.is_set()
        release.set()
        assert {future.result(WAIT_S).name for future in loading} == {"nafnet-sidd"}
    assert loads == ["nafnet-gopro", "nafnet-sidd"]  # the slow model loaded once for two jobs
    assert cache.loaded == ["nafnet-gopro", "nafnet-sidd"]
