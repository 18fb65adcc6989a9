"""Settings: embedded defaults, environment overrides, and docs that list every setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.config import ReviewThresholds, Settings
from tests.services import REPO


def test_defaults_are_the_embedded_mode(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path.as_posix()}/darkroom.db"
    assert settings.execution == "inline"
    assert settings.storage_backend == "local"
    assert settings.storage_dir == tmp_path / "objects"
    assert settings.model_dir == tmp_path / "models"


def test_environment_overrides_with_the_darkroom_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_EXECUTION", "celery")
    monkeypatch.setenv("DARKROOM_ALLOWED_INPUT_BUCKETS", '["archive"]')
    monkeypatch.setenv("DARKROOM_MAX_ATTEMPTS", "7")
    settings = Settings()
    assert settings.execution == "celery"
    assert settings.readable_buckets == {"darkroom-inputs", "archive"}
    assert settings.max_attempts == 7
    monkeypatch.setenv("DARKROOM_EXECUTION", "sometimes")
    with pytest.raises(ValidationError):
        Settings()


def test_secrets_are_not_printed() -> None:
    settings = Settings(s3_secret_access_key="hunter2")
    assert "hunter2" not in repr(settings)


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`DARKROOM_{name.upper()}`" not in readme]
    assert missing == [], f"settings missing from the README's configuration table: {missing}"


def test_review_thresholds_are_set_one_rule_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARKROOM_REVIEW__STILL_DARK", "0.2")
    monkeypatch.setenv("DARKROOM_REVIEW__INPUT_BLURRED", "off")
    review = Settings().review
    assert review.still_dark == 0.2 and review.input_blurred is None
    assert review.lights_blown == ReviewThresholds().lights_blown  # the others keep defaults
    monkeypatch.setenv("DARKROOM_REVIEW__LIGHTS_BLOWN", "lots")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e400"])
def test_a_review_threshold_must_be_finite(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """A NaN threshold would be accepted and its rule would silently never trip."""
    monkeypatch.setenv("DARKROOM_REVIEW__STILL_DARK", value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert [error["loc"] for error in refused.value.errors()] == [("review", "still_dark")]
    with pytest.raises(ValidationError):
        ReviewThresholds(lights_blown=float(value))
