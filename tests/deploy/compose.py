"""Reading docker-compose.yml and the Dockerfiles for the deploy tests: the compose file as
parsed YAML, and each service's command, options, environment, ports, volumes, dependencies
and image build, in the forms the tests compare with the code."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PREFIX = "DARKROOM_"
# Services that run Darkroom code and so read DARKROOM_* settings.
DARKROOM_SERVICES = ("migrate", "api", "worker", "flower")
# Services whose command is `darkroom ...`.
CLI_SERVICES = ("migrate", "api", "worker")
HEALTHCHECKED = ("redis", "postgres", "minio", "api")


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


def settings_from_environ() -> Settings:
    """What a process with the current ``os.environ`` (see the ``container_env`` fixture) reads,
    ignoring any ``.env`` file."""
    return Settings(_env_file=None)  # type: ignore[call-arg]
