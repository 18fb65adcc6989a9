"""The Dockerfiles docker-compose.yml builds: sources that exist, one build per image, and the
API image without torch.

The compose file names settings, CLI commands, queues and buckets that live in Python; these tests
parse it (``tests.deploy.compose``) and hold each of those names to the code, so a renamed setting,
a removed CLI option or a bucket missing from ``minio-init`` fails here instead of in a
half-started stack.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from typing import Any

from tests.deploy.compose import (
    ROOT,
    SERVICES,
    dockerfile_instructions,
    dockerfile_of,
    pip_installs,
)


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
    code = "import sys, api.app, cli, shared.db.migrate; print('torch' in sys.modules)"
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


def test_the_worker_images_vendor_recipe_installs_what_the_worker_extra_does() -> None:
    # deploy/Dockerfile.worker's comment shows how to install on a vendor PyTorch image with
    # --no-deps; a requirement missing there is a worker that fails its first job.
    text = (ROOT / "deploy" / "Dockerfile.worker").read_text()
    recipe = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    listed = {_name(r) for r in re.findall(r'"([A-Za-z0-9_.-]+[<>=!~][^"]*)"', recipe)}
    with (ROOT / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    wanted = {
        _name(r)
        for r in (*project["dependencies"], *project["optional-dependencies"]["worker"])
        if _name(r) not in ("torch", "torchvision")  # the vendor image's own
    }
    assert wanted <= listed, f"missing from the vendor recipe: {sorted(wanted - listed)}"


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_worker_image_copies_every_package_the_project_ships() -> None:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        include = tomllib.load(handle)["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = {
        shlex.split(args)[0]
        for instruction, args in dockerfile_instructions(dockerfile_of("worker"))
        if instruction == "COPY"
    }
    assert packages <= copied, f"not copied into the worker image: {packages - copied}"
