"""Logs: JSON lines carrying the job id, and no secrets in them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from fastapi.testclient import TestClient

from shared import logs
from shared.config import Settings


def test_json_lines_carry_the_job_id(settings: Settings) -> None:
    script = (
        "import logging\n"
        "from shared import logs\n"
        "from shared.config import Settings\n"
        "logs.configure(Settings(log_format='json'))\n"
        "with logs.job_context('3f0c'):\n"
        "    logging.getLogger('workers.pipeline').warning('job %s failed', '3f0c')\n"
        "logging.getLogger('api').info('outside any job')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stderr
    first, second = (json.loads(line) for line in out.strip().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "workers.pipeline"
    assert first["message"] == "job 3f0c failed" and first["job_id"] == "3f0c"
    assert "time" in first
    assert second["job_id"] is None


def test_a_request_with_an_api_key_logs_no_secret(settings: Settings, s3, caplog) -> None:  # type: ignore[no-untyped-def]
    from api.app import create_app
    from shared import tenants
    from shared.db.engine import session_scope

    auth = settings.model_copy(update={"auth": "api_key"})
    with session_scope(settings.database_url) as session:
        tenant = tenants.create_tenant(session, "log-check")
        key = tenants.create_key(session, "log-check").secret
        webhook_secret = tenant.webhook_secret
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(auth)) as http:
        http.headers["Authorization"] = f"Bearer {key}"
        assert http.get("/v1/jobs").status_code == 200
        http.post("/v1/jobs", json={"input_key": "elsewhere.jpg"})  # refused, and logged
    text = caplog.text + repr(auth)
    assert key not in text and webhook_secret not in text
    assert "testing" not in repr(settings)  # the S3 secret is a SecretStr


def test_text_format_is_the_default() -> None:
    handler = logs.make_handler(Settings().log_format)
    record = logging.LogRecord("darkroom", logging.INFO, __file__, 1, "hello", None, None)
    assert handler.format(record).endswith("hello")
