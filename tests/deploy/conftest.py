"""The deploy tests' fixture: one compose service's environment in ``os.environ``."""

from __future__ import annotations

import os

import pytest

from shared.config import get_settings
from tests.deploy.compose import PREFIX, ROOT, environment_of


@pytest.fixture
def container_env(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``container_env(name)`` puts compose service ``name``'s environment (and nothing else
    DARKROOM_*) into os.environ, as its container would see it, and returns it."""

    def apply(name: str) -> dict[str, str]:
        for key in list(os.environ):
            if key.startswith(PREFIX):
                monkeypatch.delenv(key)
        env = environment_of(name)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # No .env file from the working directory may leak into what the service would see.
        monkeypatch.chdir(ROOT / "deploy")
        get_settings.cache_clear()
        return env

    yield apply
    get_settings.cache_clear()
