"""docker-compose.yml's services: the worker's GPU, the volumes, the buckets minio-init makes,
healthchecks and the startup order.

The compose file names settings, CLI commands, queues and buckets that live in Python; these tests
parse it (``tests.deploy.compose``) and hold each of those names to the code, so a renamed setting,
a removed CLI option or a bucket missing from ``minio-init`` fails here instead of in a
half-started stack.
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.compose import (
    COMPOSE,
    HEALTHCHECKED,
    SERVICES,
    SHARED_ENV,
    as_argv,
    depends_on,
    environment_of,
    volume_targets,
)


def test_worker_reserves_an_nvidia_gpu() -> None:
    devices = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d.get("driver") == "nvidia"
        and "gpu" in d.get("capabilities", [])
        and (d.get("count") in (1, "all") or d.get("device_ids"))
        for d in devices
    ), devices


def test_worker_model_dir_is_a_named_volume() -> None:
    model_dir = environment_of("worker")["DARKROOM_MODEL_DIR"]
    source = volume_targets("worker").get(model_dir)
    assert source, f"no volume mounted at DARKROOM_MODEL_DIR={model_dir}"
    assert source in (COMPOSE.get("volumes") or {}), f"volume {source!r} is not declared"


def test_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name in SERVICES:
        for target, source in volume_targets(name).items():
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source} at {target}"


def test_minio_init_creates_the_configured_buckets() -> None:
    init = SERVICES["minio-init"]
    script = " ".join(as_argv(init.get("entrypoint")) + as_argv(init.get("command")))
    aliases = {
        m["alias"]: m
        for m in re.finditer(
            r"mc\s+(?:alias\s+set|config\s+host\s+add)\s+(?P<alias>\S+)\s+(?P<url>\S+)"
            r"\s+(?P<user>\S+)\s+(?P<password>\S+)",
            script,
        )
    }
    assert aliases, "minio-init sets no mc alias"
    for alias in aliases.values():
        assert alias["url"] == SHARED_ENV["DARKROOM_S3_ENDPOINT_URL"]
        assert alias["user"] == environment_of("minio")["MINIO_ROOT_USER"]
        assert alias["password"] == environment_of("minio")["MINIO_ROOT_PASSWORD"]
    created: set[str] = set()
    for line in re.findall(r"mc\s+mb\s+([^\n;&|]+)", script):
        for target in line.split():
            if not target.startswith("-"):
                alias, _, bucket = target.partition("/")
                assert alias in aliases, f"bucket {target} uses an unknown alias"
                created.add(bucket)
    wanted = {SHARED_ENV[f"DARKROOM_{kind}_BUCKET"] for kind in ("INPUT", "OUTPUT", "MODEL")}
    assert wanted <= created, f"minio-init does not create {wanted - created}"
    assert depends_on("minio-init").get("minio") == "service_healthy"


@pytest.mark.parametrize("name", HEALTHCHECKED)
def test_healthchecks(name: str) -> None:
    check = SERVICES[name].get("healthcheck") or {}
    test = as_argv(check.get("test"))
    assert test and test[0] != "NONE" and not check.get("disable"), f"{name} has no healthcheck"


def test_dependencies_exist_and_can_be_met() -> None:
    for name in SERVICES:
        for dep, condition in depends_on(name).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                assert SERVICES[dep].get("healthcheck"), f"{name} waits on {dep}'s healthcheck"
            if condition == "service_completed_successfully":
                assert SERVICES[dep].get("restart", "no") == "no", f"{dep} must run once"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_startup_order(name: str) -> None:
    deps = depends_on(name)
    assert deps.get("migrate") == "service_completed_successfully"
    assert deps.get("minio-init") == "service_completed_successfully"
    assert deps.get("redis") == "service_healthy"
    assert depends_on("migrate").get("postgres") == "service_healthy"
