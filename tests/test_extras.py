"""Each extra holds every import its code path makes: the API's code (``api``, ``shared``) only
what ``darkroom[api]`` installs, the workers' (``workers``, the engine, photo files, ``shared``)
only what ``darkroom[worker]`` installs, read from the source and the installed packages'
metadata.

This is the fast half of the check: it sees Darkroom's own imports, not a library's optional
import of another (scikit-image's noise estimate needs PyWavelets only when called), which
``tests/deploy/test_newcomer.py`` catches by running both in venvs with those extras alone."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
OWN = {"api", "workers", "shared", "tests", "benchmarks", "training"}

OPTIONAL = {"pynvml": "workers.metrics reads GPU utilisation through NVML when it is installed"}
"""Imports guarded by ``except ImportError``, each with what goes without them."""

CODE_PATHS = {
    "api": ("api", "shared"),
    "worker": ("workers", "restoration", "imaging", "shared"),
}
"""The CLI (``cli``) is the composition root: each command imports what its own room
needs when it runs (``serve`` the API's, ``worker`` the workers'), so it is held to the base
requirements at module level only (every venv must load it)."""
CLI = "cli"


def imported_modules(folders: tuple[str, ...], *, cli: bool = False) -> dict[str, str]:
    """Top-level names of the third-party modules imported anywhere in ``folders`` (at any
    depth: a lazy import inside a function runs too), each with one file importing it; with
    ``cli``, the CLI's module-level imports instead."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_relative_to(ROOT / CLI) != cli:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in tree.body if cli else ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in OWN and top not in sys.stdlib_module_names:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_with(extra: str) -> set[str]:
    """Distributions ``pip install darkroom[extra]`` brings: Darkroom's own requirements and
    the extra's, and theirs in turn (as the installed packages declare them)."""
    wanted: list[tuple[str, set[str]]] = [("darkroom", {extra})]
    seen: set[str] = set()
    while wanted:
        name, extras = wanted.pop()
        key = _canonical(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a requirement this platform's markers skip
        for line in requires:
            requirement = Requirement(line)
            marker: Marker | None = requirement.marker
            environments = [{"extra": e} for e in extras] or [{"extra": ""}]
            if marker is None or any(marker.evaluate(env) for env in environments):
                wanted.append((requirement.name, set(requirement.extras)))
    return seen


def _not_installed(imports: dict[str, str], installed: set[str]) -> dict[str, str]:
    providers = metadata.packages_distributions()
    return {
        module: where
        for module, where in imports.items()
        if module not in OPTIONAL
        and not any(_canonical(d) in installed for d in providers.get(module, []))
    }


@pytest.mark.parametrize("extra", sorted(CODE_PATHS))
def test_every_import_of_a_code_path_is_installed_by_its_extra(extra: str) -> None:
    missing = _not_installed(imported_modules(CODE_PATHS[extra]), installed_with(extra))
    assert not missing, f"imported but not installed by darkroom[{extra}]: {missing}"


def test_the_cli_loads_with_the_base_requirements_alone() -> None:
    missing = _not_installed(imported_modules((CLI,), cli=True), installed_with(""))
    assert not missing, f"imported by the CLI at load but not a base requirement: {missing}"


def test_the_check_sees_a_module_no_extra_installs(tmp_path: Path) -> None:
    # The scan itself: a lazy import of a module that no extra installs is found.
    assert "skimage" in imported_modules(("imaging",))
    assert _canonical("scikit-image") in installed_with("worker")
    assert _canonical("scikit-image") not in installed_with("api")
    assert _canonical("PyWavelets") in installed_with("worker")
