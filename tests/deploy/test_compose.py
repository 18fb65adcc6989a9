"""docker-compose.yml and the Dockerfiles, checked against the code without running Docker.

The compose file names settings, CLI commands, queues and buckets that live in Python; these tests
parse it and hold each of those names to the code, so a renamed setting, a removed CLI option or a
bucket missing from ``minio-init`` fails here instead of in a half-started stack.
"""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from celery import Celery
from celery.concurrency import ALIASES as CELERY_POOLS
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from shared.catalogue import CATALOGUE
from shared.cli import app as cli_app
from shared.config import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PREFIX = "DARKROOM_"
# Services that run Darkroom code and so read DARKROOM_* settings.
DARKROOM_SERVICES = ("migrate", "api", "worker", "flower")
# Services whose command is `darkroom ...`.
CLI_SERVICES = ("migrate", "api", "worker")
HEALTHCHECKED = ("redis", "postgres", "minio", "api")

# --- helpers ----------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as handle:
        return yaml.safe_load(handle)


COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def as_argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def command_of(name: str) -> list[str]:
    return as_argv(SERVICES[name].get("command"))


def options_of(argv: list[str]) -> dict[str, str]:
    """``--name value`` and ``--name=value`` pairs (a flag with no value maps to "")."""
    options: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("-"):
            if "=" in token:
                key, value = token.split("=", 1)
                options[key] = value
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                options[token] = argv[i + 1]
                i += 1
            else:
                options[token] = ""
        i += 1
    return options


def subcommand_of(argv: list[str]) -> list[str]:
    """The words after the program name, up to the first option."""
    words = []
    for token in argv[1:]:
        if token.startswith("-"):
            break
        words.append(token)
    return words


def environment_of(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def darkroom_env(name: str) -> dict[str, str]:
    return {k: v for k, v in environment_of(name).items() if k.startswith(PREFIX)}


SHARED_ENV: dict[str, str] = {str(k): str(v) for k, v in COMPOSE["x-darkroom-env"].items()}


def published_ports(name: str) -> dict[int, int]:
    """Container port -> host port, from short (``"8000:8000"``) or long syntax."""
    ports: dict[int, int] = {}
    for entry in SERVICES[name].get("ports") or []:
        if isinstance(entry, dict):
            ports[int(entry["target"])] = int(entry.get("published", entry["target"]))
            continue
        parts = str(entry).split("/")[0].split(":")
        container = int(parts[-1])
        ports[container] = int(parts[-2]) if len(parts) > 1 else container
    return ports


def volume_targets(name: str) -> dict[str, str]:
    """Container path -> source, from short (``"name:/path[:ro]"``) or long syntax."""
    targets: dict[str, str] = {}
    for entry in SERVICES[name].get("volumes") or []:
        if isinstance(entry, dict):
            targets[entry["target"]] = entry.get("source", "")
        else:
            parts = str(entry).split(":")
            targets[parts[1]] = parts[0]
    return targets


def depends_on(name: str) -> dict[str, str]:
    deps = SERVICES[name].get("depends_on") or {}
    if isinstance(deps, list):
        return {dep: "service_started" for dep in deps}
    return {dep: (spec or {}).get("condition", "service_started") for dep, spec in deps.items()}


def dockerfile_of(name: str) -> Path:
    build = SERVICES[name]["build"]
    if isinstance(build, str):
        return ROOT / build / "Dockerfile"
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in logical]


def pip_installs(path: Path) -> list[str]:
    """Every ``pip install ...`` segment of the Dockerfile's RUN instructions."""
    found = []
    for instruction, args in dockerfile_instructions(path):
        if instruction == "RUN":
            for segment in re.split(r"&&|;", args):
                if re.search(r"\bpip3? install\b", segment):
                    found.append(segment.strip())
    return found


@pytest.fixture
def service_env(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Put one service's environment (and nothing else DARKROOM_*) into os.environ."""
    import os

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


def settings_from_env() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


# --- settings ---------------------------------------------------------------------------------


def test_darkroom_services_get_the_shared_environment() -> None:
    assert SHARED_ENV, "x-darkroom-env is empty"
    for name in DARKROOM_SERVICES:
        env = environment_of(name)
        missing = {k: v for k, v in SHARED_ENV.items() if env.get(k) != v}
        assert not missing, f"{name} does not carry the shared settings: {missing}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_darkroom_variables_are_settings_fields(name: str) -> None:
    unknown = [
        key
        for key in darkroom_env(name)
        if key[len(PREFIX) :].split("__")[0].lower() not in Settings.model_fields
    ]
    # Settings ignores unknown variables (extra="ignore"), so a typo would pass silently.
    assert not unknown, f"{name}: not fields of shared.config.Settings: {unknown}"


@pytest.mark.parametrize("name", DARKROOM_SERVICES)
def test_darkroom_environment_parses(name: str, service_env) -> None:  # type: ignore[no-untyped-def]
    env = service_env(name)
    settings = settings_from_env()  # raises on a bad value (a wrong Literal, a non-int, bad JSON)
    # Containers share state only through the servers: no SQLite, local folder or inline runs.
    assert settings.execution == "celery"
    assert settings.storage_backend == "s3"
    assert not settings.database_url.startswith("sqlite")
    for key, value in env.items():
        if not key.startswith(PREFIX) or "__" in key:
            continue
        parsed = getattr(settings, key[len(PREFIX) :].lower())
        if hasattr(parsed, "get_secret_value"):
            parsed = parsed.get_secret_value()
        if isinstance(parsed, list):
            continue
        assert str(parsed) == value, f"{name}: {key}={value!r} was read as {parsed!r}"
    unknown_models = set(settings.preload_models) - set(CATALOGUE)
    assert not unknown_models, f"{name} preloads models not in the catalogue: {unknown_models}"


def test_database_url_matches_postgres_service() -> None:
    url = make_url(SHARED_ENV["DARKROOM_DATABASE_URL"])
    pg = environment_of("postgres")
    assert url.get_backend_name() == "postgresql"
    assert url.host in SERVICES and SERVICES[url.host]["image"].startswith("postgres")
    assert (url.port or 5432) == 5432
    assert url.username == pg["POSTGRES_USER"]
    assert url.password == pg["POSTGRES_PASSWORD"]
    assert url.database == pg["POSTGRES_DB"]


def test_broker_url_points_at_redis_service() -> None:
    broker = urlsplit(SHARED_ENV["DARKROOM_BROKER_URL"])
    assert broker.scheme == "redis"
    assert broker.hostname in SERVICES
    assert SERVICES[broker.hostname]["image"].startswith("redis")
    assert (broker.port or 6379) == 6379


def test_s3_settings_match_minio() -> None:
    endpoint = urlsplit(SHARED_ENV["DARKROOM_S3_ENDPOINT_URL"])
    assert endpoint.hostname == "minio" and endpoint.port == 9000
    minio = environment_of("minio")
    assert SHARED_ENV["DARKROOM_S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert SHARED_ENV["DARKROOM_S3_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    # MinIO refuses to start with a root password under 8 characters.
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8


def test_public_s3_endpoint_is_published_by_minio() -> None:
    """Presigned URLs are signed for this host (SigV4 signs Host): clients must reach it."""
    public = urlsplit(SHARED_ENV["DARKROOM_S3_PUBLIC_ENDPOINT_URL"])
    internal = urlsplit(SHARED_ENV["DARKROOM_S3_ENDPOINT_URL"])
    assert public.hostname not in SERVICES, "the public endpoint must not be an in-network name"
    assert published_ports("minio").get(internal.port or 80) == (public.port or 80)


# --- commands ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLI_SERVICES)
def test_cli_command_and_options_exist(name: str) -> None:
    argv = command_of(name)
    assert argv and argv[0] == "darkroom", f"{name} does not run the darkroom CLI: {argv}"
    words = subcommand_of(argv)
    assert words, f"{name} names no darkroom command"
    result = CliRunner().invoke(cli_app, [*words, "--help"])
    assert result.exit_code == 0, f"`darkroom {' '.join(words)}` is not a command:\n{result.output}"
    for option in options_of(argv):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", result.output), (
            f"`darkroom {' '.join(words)}` has no option {option}:\n{result.output}"
        )


def test_worker_queues_are_catalogue_families() -> None:
    families = {entry.family for entry in CATALOGUE.values()}
    served: set[str] = set()
    for name in SERVICES:
        argv = command_of(name)
        if argv[:1] != ["darkroom"] or subcommand_of(argv) != ["worker"]:
            continue
        queues = options_of(argv).get("--queues")
        # Without --queues a worker serves every family; the compose worker names its own.
        chosen = set(queues.split(",")) if queues else families
        assert chosen <= families, f"{name} serves unknown families: {chosen - families}"
        served |= chosen
        assert options_of(argv).get("--pool", "solo") in CELERY_POOLS
    # A family nobody consumes leaves its jobs queued forever.
    assert served == families, f"no worker for families {families - served}"


def test_worker_command_consumes_the_routed_queues(service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import workers.celery_app

    service_env("worker")
    settings = settings_from_env()
    calls: list[list[str]] = []
    monkeypatch.setattr(workers.celery_app.app, "worker_main", calls.append)
    result = CliRunner().invoke(cli_app, command_of("worker")[1:])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1, "the worker did not start a Celery consumer"
    consumed = set(options_of(calls[0])["--queues"].split(","))
    queues = options_of(command_of("worker")).get("--queues", "")
    wanted = [e for e in CATALOGUE.values() if e.family in queues.split(",")]
    assert wanted
    # The queue the API routes each model's jobs to is the one this worker consumes.
    assert {settings.queue_for(entry.family) for entry in wanted} == consumed


def test_api_serves_on_its_published_port(service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    service_env("api")
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    result = CliRunner().invoke(cli_app, command_of("api")[1:])
    assert result.exit_code == 0, result.output
    (fastapi_app, kwargs), *_ = calls
    assert kwargs["host"] == "0.0.0.0", "the API must listen beyond the container's loopback"
    assert kwargs["port"] in published_ports("api"), f"port {kwargs['port']} is not published"
    from fastapi.testclient import TestClient

    with TestClient(fastapi_app) as client:
        assert client.get("/healthz").status_code == 200
    probe = " ".join(as_argv(SERVICES["api"]["healthcheck"]["test"]))
    assert f":{kwargs['port']}/healthz" in probe


def test_migrate_upgrades_the_shared_database(service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import shared.db.migrate

    service_env("migrate")
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(shared.db.migrate, "upgrade", lambda *args: calls.append(args))
    result = CliRunner().invoke(cli_app, command_of("migrate")[1:])
    assert result.exit_code == 0, result.output
    assert calls and calls[0][0] == SHARED_ENV["DARKROOM_DATABASE_URL"]


def test_flower_watches_the_darkroom_broker(service_env) -> None:  # type: ignore[no-untyped-def]
    argv = command_of("flower")
    assert argv[0] == "celery" and "flower" in argv
    options = options_of(argv)
    app_ref = options.get("--app") or options.get("-A")
    broker = options.get("--broker") or options.get("-b")
    assert app_ref or broker, "flower names neither the Celery app nor the broker"
    if broker:
        assert broker == SHARED_ENV["DARKROOM_BROKER_URL"]
    if app_ref:
        module, _, attr = app_ref.partition(":")
        celery_app = getattr(importlib.import_module(module), attr or "app")
        assert isinstance(celery_app, Celery)
        # The app reads its broker from the settings: flower's environment must be the shared one.
        service_env("flower")
        from shared.queue import make_celery

        built = make_celery(settings_from_env())
        assert built.conf.broker_url == SHARED_ENV["DARKROOM_BROKER_URL"]
    port = int(options.get("--port", 5555))
    assert port in published_ports("flower")


# --- GPU, volumes, buckets, startup order ------------------------------------------------------


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


# --- images -----------------------------------------------------------------------------------


def test_builds_use_existing_dockerfiles_and_sources() -> None:
    for name, service in SERVICES.items():
        if "build" not in service:
            continue
        dockerfile = dockerfile_of(name)
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        build = service["build"]
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        for instruction, args in dockerfile_instructions(dockerfile):
            if instruction == "COPY" and "--from" not in args:
                *sources, _ = [a for a in shlex.split(args) if not a.startswith("--")]
                for source in sources:
                    assert (context / source).exists(), f"{dockerfile.name} copies {source}"


def test_services_sharing_an_image_build_it_the_same_way() -> None:
    builds: dict[str, Any] = {}
    for name, service in SERVICES.items():
        if "build" in service and "image" in service:
            previous = builds.setdefault(service["image"], service["build"])
            assert previous == service["build"], f"{name} builds {service['image']} differently"


def test_api_image_installs_the_api_extra_without_torch() -> None:
    assert dockerfile_of("api") == dockerfile_of("migrate")
    dockerfile = dockerfile_of("api")
    installs = pip_installs(dockerfile)
    assert any(re.search(r"\.\[api\]", cmd) for cmd in installs), installs
    for cmd in installs:
        assert not re.search(r"worker|torch", cmd), f"the API image installs {cmd!r}"
    with (ROOT / "pyproject.toml").open("rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    assert not [d for d in extras["api"] if re.match(r"torch", d)]


def test_api_commands_do_not_import_torch() -> None:
    """The API image has no torch: serving and migrating must not import it."""
    code = "import sys, api.app, shared.cli, shared.db.migrate; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_worker_image_installs_the_worker_extra() -> None:
    assert dockerfile_of("worker") == dockerfile_of("flower")
    installs = pip_installs(dockerfile_of("worker"))
    assert any(re.search(r"\.\[worker\]", cmd) for cmd in installs), installs
    with (ROOT / "pyproject.toml").open("rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    # Flower runs from the worker image.
    assert any(d.startswith("flower") for d in extras["worker"])
