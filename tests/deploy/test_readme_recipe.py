"""The README's "Run it on real services, without Docker" runs as written: the test takes the
section's shell block, points its addresses at this machine's services (a database, a Redis
database, free ports of its own), runs it with bash and checks where the result landed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests import services

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## Run it on real services, without Docker"

pytestmark = pytest.mark.e2e


def recipe() -> str:
    """The shell block of the README section, as a reader copies it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section has one shell block to run"
    return blocks[0]


def _localised(script: str, database_url: str, redis_db: int, s3_port: int, api_port: int) -> str:
    """The same lines, on this run's own database, Redis database and ports."""
    name = make_url(database_url).database
    replacements = {
        "postgresql+psycopg2://postgres@127.0.0.1:5432/darkroom": database_url,
        "-U postgres darkroom": f"-U postgres {name}",
        "redis://127.0.0.1:6379/0": f"redis://127.0.0.1:6379/{redis_db}",
        '"$PWD/.venv/bin': f'"{ROOT}/.venv/bin',
        "samples/": f"{ROOT}/samples/",
        "127.0.0.1:9000": f"127.0.0.1:{s3_port}",
        "moto_server -p 9000 ": f"moto_server -p {s3_port} ",
        "127.0.0.1:8000": f"127.0.0.1:{api_port}",
        "darkroom serve --port 8000 ": f"darkroom serve --port {api_port} ",
    }
    for old, new in replacements.items():
        assert old in script, f"the README recipe no longer says {old!r}"
        script = script.replace(old, new)
    return script


def test_the_readme_recipe_runs_a_job_on_real_services(redis_url: str, tmp_path: Path) -> None:
    script = recipe()
    with services.scratch_database("darkroom_readme") as database_url:
        local = _localised(script, database_url, 13, services.free_port(), services.free_port())
        prelude = (
            "set -euo pipefail\n"
            "trap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\n"
            # This run's own queues, so a worker of another run on the machine never takes them.
            f"export DARKROOM_QUEUE_PREFIX=readme-{uuid.uuid4().hex[:8]}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
        proc = subprocess.Popen(
            ["bash", "-c", prelude + local],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}
            pytest.fail(f"the recipe did not finish: {out}\n{err}\n{logs}")
    assert proc.returncode == 0, f"{out}\n{err}"
    lines = out.strip().splitlines()
    assert lines[-2] == "succeeded", out
    assert re.fullmatch(
        r"tenants/acme-photos/results/[0-9a-f-]{36}/night/kodim03\.jpg", lines[-1]
    ), out
    restored = (tmp_path / "restored.jpg").read_bytes()
    assert restored[:3] == b"\xff\xd8\xff"  # a JPEG, downloaded through the presigned URL
    assert len(restored) > 1000
