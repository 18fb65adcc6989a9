"""``darkroom tenants`` / ``darkroom keys``: an operator gives a customer a key that works."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.config import Settings
from tests.cli.test_photos import darkroom


def test_create_a_tenant_and_key_use_it_then_revoke_it(
    settings: Settings, service_env: dict[str, str], s3, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    env = {**service_env, "DARKROOM_AUTH": "api_key"}
    tenant = f"cli-{uuid.uuid4().hex[:6]}"
    made = darkroom("tenants", "create", tenant, "--rate-limit", "100", env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert re.search(r"webhook secret \(shown once\): \S{20,}", made.stdout)
    again = darkroom("tenants", "create", tenant, env=env, cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert darkroom("tenants", "create", "Bad Name!", env=env, cwd=tmp_path).returncode == 1

    created = darkroom("keys", "create", "--tenant", tenant, env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = re.search(r"(drk_\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    listed = darkroom("keys", "list", "--tenant", tenant, env=env, cwd=tmp_path)
    assert key[:12] in listed.stdout and key not in listed.stdout  # only its start is shown

    with TestClient(create_app(settings.model_copy(update={"auth": "api_key"}))) as http:
        http.headers["Authorization"] = f"Bearer {key}"
        assert http.get("/v1/jobs").status_code == 200
        revoked = darkroom("keys", "revoke", key[:12], env=env, cwd=tmp_path)
        assert revoked.returncode == 0 and "revoked 1" in revoked.stdout
        assert http.get("/v1/jobs").status_code == 401


@pytest.mark.slow  # runs the darkroom CLI
def test_tenant_commands_create_the_embedded_database(tmp_path: Path) -> None:
    env = {"DARKROOM_HOME": str(tmp_path / "home")}
    assert darkroom("tenants", "create", "studio-one", env=env, cwd=tmp_path).returncode == 0
    listed = darkroom("tenants", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "studio-one" in listed.stdout


@pytest.mark.slow  # runs the darkroom CLI
def test_a_tenants_review_thresholds_are_set_shown_and_reset(tmp_path: Path) -> None:
    env = {"DARKROOM_HOME": str(tmp_path / "home")}
    assert darkroom("tenants", "create", "studio-two", env=env, cwd=tmp_path).returncode == 0
    set_ = darkroom(
        "tenants",
        "review",
        "studio-two",
        "still_dark=0.1",
        "input_blurred=off",
        env=env,
        cwd=tmp_path,
    )
    assert set_.returncode == 0, set_.stderr
    rows = {line.split()[1]: line for line in set_.stdout.splitlines() if line.count("│") >= 3}
    assert "0.1" in rows["still_dark"] and "tenant" in rows["still_dark"]
    assert "off" in rows["input_blurred"] and "tenant" in rows["input_blurred"]
    assert "server" in rows["lights_blown"]
    for bad in ("nope=1", "still_dark=dim", "still_dark"):
        refused = darkroom("tenants", "review", "studio-two", bad, env=env, cwd=tmp_path)
        assert refused.returncode == 1 and refused.stderr, bad
    reset = darkroom("tenants", "review", "studio-two", "--reset", env=env, cwd=tmp_path)
    assert reset.returncode == 0 and "tenant" not in reset.stdout.split("review rules of")[1]


def test_a_review_threshold_that_is_not_a_finite_number_is_one_line_of_error(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    """On PostgreSQL, whose json refuses NaN and the infinities: refused before it is stored,
    as a threshold that is not a number at all is, and the tenant's rules stay as they were."""
    tenant = f"nan-{uuid.uuid4().hex[:6]}"
    env = dict(service_env)
    assert darkroom("tenants", "create", tenant, env=env, cwd=tmp_path).returncode == 0
    for bad in ("still_dark=nan", "still_dark=inf", "still_dark=-Infinity", "still_dark=1e400"):
        refused = darkroom("tenants", "review", tenant, bad, env=env, cwd=tmp_path)
        assert refused.returncode == 1, (bad, refused.stdout, refused.stderr)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "still_dark" in lines[0], (bad, refused.stderr)
    shown = darkroom("tenants", "review", tenant, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "tenant" not in shown.stdout.split("review rules of")[1]  # nothing was stored
