"""``darkroom serve`` and ``darkroom worker`` with no broker: the embedded service pair."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import jpeg_bytes
from tests.services import BIN, free_port, port_open, stop, wait_until

pytestmark = pytest.mark.slow  # starts darkroom serve and an embedded worker


def test_serve_and_embedded_worker_restore_an_upload(tmp_path: Path, model_dir: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")},
        "DARKROOM_MODEL_DIR": str(model_dir),
        "DARKROOM_DEVICE": "cpu",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    api = subprocess.Popen(
        [str(BIN / "darkroom"), "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=(logs / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        wait_until(lambda: port_open(port), 60, message="darkroom serve to listen")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        created = httpx.post(
            f"{base}/v1/jobs",
            files={"file": ("dusk.jpg", jpeg_bytes((56, 40)), "image/jpeg")},
            data={"model": "mirnet-lol"},
        )
        assert created.status_code == 202, created.text
        job_url = f"{base}{created.headers['location']}"
        time.sleep(0.5)
        assert httpx.get(job_url).json()["status"] == "queued"  # nothing runs it yet

        worker = subprocess.Popen(
            [str(BIN / "darkroom"), "worker"],
            env=env,
            cwd=tmp_path,
            stdout=(logs / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        done = wait_until(
            lambda: httpx.get(job_url).json(),
            90,
            message="the job to succeed",
            until=lambda job: job["status"] == "succeeded",
        )
        result = done["result"]
        assert result["url"].startswith("file://")
        assert Path(result["url"].removeprefix("file://")).stat().st_size > 0
    finally:
        for proc in (worker, api):
            if proc is not None:
                stop(proc)
