"""docker-compose.yml's commands: each service runs a real darkroom (or celery) command with
options it has, and what it starts serves, consumes and migrates what the stack expects.

The compose file names settings, CLI commands, queues and buckets that live in Python; these tests
parse it (``tests.deploy.compose``) and hold each of those names to the code, so a renamed setting,
a removed CLI option or a bucket missing from ``minio-init`` fails here instead of in a
half-started stack.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
from celery import Celery
from celery.concurrency import ALIASES as CELERY_POOLS
from typer.testing import CliRunner

from cli import app as cli_app
from shared.catalogue import CATALOGUE
from tests.deploy.compose import (
    CLI_SERVICES,
    SERVICES,
    SHARED_ENV,
    as_argv,
    command_of,
    options_of,
    published_ports,
    settings_from_environ,
    subcommand_of,
)


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


def test_worker_command_consumes_the_routed_queues(container_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import workers.celery_app

    container_env("worker")
    settings = settings_from_environ()
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


def test_api_serves_on_its_published_port(container_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    container_env("api")
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


def test_migrate_upgrades_the_shared_database(container_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import shared.db.migrate

    container_env("migrate")
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(shared.db.migrate, "upgrade", lambda *args: calls.append(args))
    result = CliRunner().invoke(cli_app, command_of("migrate")[1:])
    assert result.exit_code == 0, result.output
    assert calls and calls[0][0] == SHARED_ENV["DARKROOM_DATABASE_URL"]


def test_flower_watches_the_darkroom_broker(container_env) -> None:  # type: ignore[no-untyped-def]
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
        container_env("flower")
        from shared.queue import make_celery

        built = make_celery(settings_from_environ())
        assert built.conf.broker_url == SHARED_ENV["DARKROOM_BROKER_URL"]
    port = int(options.get("--port", 5555))
    assert port in published_ports("flower")
