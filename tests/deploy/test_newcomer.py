"""The README's commands as a newcomer runs them, in a fresh copy of the repository and fresh
virtual environments built by the README's own commands, so each holds exactly the extras those
commands install (the suite's own ``.venv`` holds every extra, and would hide one missing):

1. ``make demo`` restores the four sample photos, in the venv it sets up itself (``worker``);
2. a job goes through the API and a Celery worker, with the API run from a venv with only the
   ``api`` extra and the worker from one with only ``worker``: what the two images
   (``deploy/Dockerfile.api``, ``deploy/Dockerfile.worker``) install;
3. the README's "Run it on real services, without Docker" block runs as written, from a
   checkout set up with the extras it names.

The tests run in this order (3 adds extras to the venv that 1 made, which 2 checks has only
``worker``)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests import services

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Run it on real services, without Docker"
SETUP_MINUTES = 20
"""A fresh venv takes minutes (torch is several GB) on a quiet machine: room for a busy one."""

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(SETUP_MINUTES * 60 + 600)]


def newcomer_env() -> dict[str, str]:
    """This shell's environment as a newcomer's would be: no Darkroom settings, no activated
    venv, not the suite's ``.venv`` on the PATH."""
    ours = str(ROOT / ".venv" / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != ours)
    skip = ("DARKROOM_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env["PATH"] = path
    return env


def fresh_clone(parent: Path) -> Path:
    """The repository as ``git clone`` gives it: the files git tracks plus new ones it does not
    ignore (so the working tree under test, never ``.venv``, ``.darkroom`` or build outputs)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    clone = parent / "darkroom"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            target = clone / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return clone


def run(command: list[str], cwd: Path, minutes: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=newcomer_env(),
        capture_output=True,
        text=True,
        timeout=minutes * 60,
    )


def extras_of(clone: Path) -> set[str]:
    """The extras ``scripts/setup.sh`` installed into the clone's venv (its stamp files)."""
    prefix = ".darkroom-"
    return {p.name[len(prefix) :] for p in (clone / ".venv").glob(prefix + "*")}


def importable(venv_python: Path, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(venv_python), "-c", probe], env=newcomer_env()).returncode == 0


@dataclass
class Newcomer:
    clone: Path
    demo: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newcomer]:
    """A fresh clone on which ``make demo`` ran once: the first thing a newcomer types."""
    clone = fresh_clone(tmp_path_factory.mktemp("newcomer"))
    demo = run(["make", "demo"], clone, SETUP_MINUTES)
    yield Newcomer(clone, demo)
    # Several GB of venv: pytest keeps its last three runs' folders, and a disk fills up.
    shutil.rmtree(clone, ignore_errors=True)


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Another fresh clone set up with the ``api`` extra alone, as the API image is."""
    clone = fresh_clone(tmp_path_factory.mktemp("api-only"))
    setup = run(["scripts/setup.sh", "api"], clone, SETUP_MINUTES)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    yield clone
    shutil.rmtree(clone, ignore_errors=True)


def test_make_demo_restores_the_four_samples_in_the_venv_it_sets_up(newcomer: Newcomer) -> None:
    demo = newcomer.demo
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    assert re.search(r"^4 succeeded, 0 failed, 4 in all$", demo.stdout, re.M), output
    samples = sorted((newcomer.clone / "samples").glob("*.jpg"))
    results = sorted((newcomer.clone / "darkroom-results").rglob("*.jpg"))
    assert [r.name for r in results] == [s.name for s in samples]
    for sample, result in zip(samples, results, strict=True):
        with Image.open(sample) as before, Image.open(result) as after:
            assert after.size == before.size
            assert after.format == "JPEG"
    # Every job was measured too: a side measure that fails keeps the photo but is a defect.
    assert measured(f"sqlite:///{newcomer.clone / '.darkroom' / 'darkroom.db'}") == [True] * 4
    # The demo's venv has the worker extra and nothing more, so nothing else masked a gap.
    assert extras_of(newcomer.clone) == {"worker"}


def test_a_job_runs_through_the_api_image_extras_and_the_worker_image_extras(
    newcomer: Newcomer, api_only: Path, redis_url: str, tmp_path: Path
) -> None:
    worker_venv = newcomer.clone / ".venv"
    api_venv = api_only / ".venv"
    assert extras_of(newcomer.clone) == {"worker"}, "runs before the recipe adds extras"
    assert extras_of(api_only) == {"api"}
    assert not importable(api_venv / "bin" / "python", "torch")  # the API image has no torch
    assert not importable(worker_venv / "bin" / "python", "fastapi")
    out = run_recipe(
        tmp_path,
        path_venv=ROOT / ".venv",  # moto_server and the CLI's set-up commands
        serve=api_venv / "bin" / "darkroom",
        worker=worker_venv / "bin" / "darkroom",
    )
    assert_recipe_succeeded(out, tmp_path)


def test_the_readme_recipe_runs_a_job_on_real_services(
    newcomer: Newcomer, redis_url: str, tmp_path: Path
) -> None:
    extras = re.search(r"set up with\s+`scripts/setup\.sh ([a-z,]+)`", readme_section())
    assert extras, "the section names the extras its checkout is set up with"
    setup = run(["scripts/setup.sh", extras.group(1)], newcomer.clone, SETUP_MINUTES)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert extras_of(newcomer.clone) == {"worker", extras.group(1).replace(",", "-")}
    out = run_recipe(tmp_path, path_venv=newcomer.clone / ".venv")
    assert_recipe_succeeded(out, tmp_path)


def readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split(HEADING, 1)[1].split("\n## ", 1)[0]


def recipe() -> str:
    """The shell block of the README section, as a reader copies it."""
    blocks = re.findall(r"```bash\n(.*?)```", readme_section(), flags=re.S)
    assert len(blocks) == 1, "the section has one shell block to run"
    return blocks[0]


def _localised(
    script: str,
    database_url: str,
    redis_db: int,
    ports: tuple[int, int],
    path_venv: Path,
    serve: Path | None,
    worker: Path | None,
) -> str:
    """The same lines, on this run's own database, Redis database, ports and venvs."""
    s3_port, api_port = ports
    name = make_url(database_url).database
    serve_command = f"{serve or 'darkroom'} serve --port {api_port} "
    replacements = {
        "postgresql+psycopg2://postgres@127.0.0.1:5432/darkroom": database_url,
        "-U postgres darkroom": f"-U postgres {name}",
        "redis://127.0.0.1:6379/0": f"redis://127.0.0.1:6379/{redis_db}",
        '"$PWD/.venv/bin': f'"{path_venv}/bin',
        "samples/": f"{ROOT}/samples/",
        "127.0.0.1:9000": f"127.0.0.1:{s3_port}",
        "moto_server -p 9000 ": f"moto_server -p {s3_port} ",
        "127.0.0.1:8000": f"127.0.0.1:{api_port}",
        "darkroom serve --port 8000 ": serve_command,
        "darkroom worker >": f"{worker or 'darkroom'} worker >",
    }
    for old, new in replacements.items():
        assert old in script, f"the README recipe no longer says {old!r}"
        script = script.replace(old, new)
    return script


def measured(database_url: str) -> list[bool]:
    """For each job in the database: whether it has its quality signals and no measure error."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT quality, measure_error FROM jobs")).all()
    finally:
        engine.dispose()
    return [quality is not None and error is None for quality, error in rows]


def run_recipe(
    workdir: Path, path_venv: Path, serve: Path | None = None, worker: Path | None = None
) -> str:
    """Run the README's block with bash in ``workdir``; its standard output. The job it ran
    must have been measured as well."""
    with services.scratch_database("darkroom_readme") as database_url:
        ports = (services.free_port(), services.free_port())
        local = _localised(recipe(), database_url, 13, ports, path_venv, serve, worker)
        prelude = (
            "set -euo pipefail\n"
            "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n"
            # This run's own queues, so a worker of another run on the machine never takes them.
            f"export DARKROOM_QUEUE_PREFIX=readme-{uuid.uuid4().hex[:8]}\n"
        )
        proc = subprocess.Popen(
            ["bash", "-c", prelude + local],
            cwd=workdir,
            env=newcomer_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            logs = {p.name: p.read_text()[-2000:] for p in workdir.glob("*.log")}
            pytest.fail(f"the recipe did not finish: {out}\n{err}\n{logs}")
        jobs_measured = measured(database_url)
    logs = {p.name: p.read_text()[-3000:] for p in workdir.glob("*.log")}
    assert proc.returncode == 0, f"{out}\n{err}\n{logs}"
    assert jobs_measured == [True], f"the job's quality was not measured: {logs}"
    return out


def assert_recipe_succeeded(out: str, workdir: Path) -> None:
    lines = out.strip().splitlines()
    logs = {p.name: p.read_text()[-3000:] for p in workdir.glob("*.log")}
    assert lines[-2] == "succeeded", f"{out}\n{logs}"
    assert re.fullmatch(
        r"tenants/acme-photos/results/[0-9a-f-]{36}/night/kodim03\.jpg", lines[-1]
    ), out
    restored = (workdir / "restored.jpg").read_bytes()
    assert restored[:3] == b"\xff\xd8\xff"  # a JPEG, downloaded through the presigned URL
    assert len(restored) > 1000
