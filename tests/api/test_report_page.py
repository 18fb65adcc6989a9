"""The batch report page in a real browser, served by ``darkroom serve`` in the embedded mode,
and the snapshot file ``darkroom report`` writes.

Headless Chromium is Debian's package (``scripts/test.sh`` installs it), driven by Playwright
from PyPI. The screenshot of the page lands in ``build/screenshots/report-page.png`` for a
person to look at.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.services import BIN, REPO, free_port, port_open, stop, wait_until

pytestmark = pytest.mark.slow

SCREENSHOT = REPO / "build" / "screenshots" / "report-page.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _photo(brightness: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:128]
    pattern = 0.55 + 0.3 * np.sin(x / 6.0 + seed) * np.cos(y / 8.0)
    pixels = pattern[..., None] * [1.0, 0.85, 0.7] + rng.normal(0, 0.02, (96, 128, 3))
    buffer = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0, 1) * brightness * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """An embedded home with one finished batch: two well-exposed photos (flagged: "input
    already well exposed"), two dim ones, one corrupt file. Returns (environment, batch id)."""
    root = tmp_path_factory.mktemp("report")
    photos = root / "photos"
    photos.mkdir()
    for name, body in {
        "01-dim.png": _photo(0.12, 1),
        "02-bright.png": _photo(1.0, 2),
        "03-dim.png": _photo(0.1, 3),
        "04-bright.png": _photo(0.95, 4),
        "05-corrupt.png": b"not a photo",
    }.items():
        (photos / name).write_bytes(body)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")},
        "DARKROOM_HOME": str(root / "home"),
        # Only the rules that read the input's brightness: what the model makes of these
        # synthetic photos must not decide which are flagged.
        **{
            f"DARKROOM_REVIEW__{rule.upper()}": "off"
            for rule in ("still_dark", "lights_blown", "noise_amplified", "colour_shifted")
        },
        "DARKROOM_REVIEW__INPUT_BLURRED": "off",
    }
    submitted = subprocess.run(
        [str(BIN / "darkroom"), "submit", str(photos)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    # One corrupt photo fails its own job, so the command exits 1 after restoring the rest.
    assert submitted.returncode == 1, submitted.stdout + submitted.stderr
    found = re.search(r"batch (\S+) submitted", submitted.stdout)
    assert found, submitted.stdout
    yield env, found.group(1)


@pytest.fixture(scope="module")
def serve_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``darkroom serve`` writes: its access log shows the requests a browser makes on
    its own (``/favicon.ico``), which Playwright does not report."""
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="module")
def served(embedded: tuple[dict[str, str], str], serve_log: Path) -> Iterator[str]:
    env, _ = embedded
    port = free_port()
    log = serve_log
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "darkroom"), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 60, message="darkroom serve")
        assert proc.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_the_page_in_a_browser_lists_flagged_photos_first_and_records_a_decision(
    served: str, embedded: tuple[dict[str, str], str], serve_log: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    _, batch_id = embedded
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            failed_requests: list[str] = []
            page.on("requestfailed", lambda request: failed_requests.append(request.url))
            page.goto(f"{served}/v1/batches/{batch_id}/report")
            cards = page.locator("section.card")
            expect(cards).to_have_count(5)
            names = cards.locator(".name").all_inner_texts()
            assert names[:2] == ["02-bright.png", "04-bright.png"], names  # flagged first
            assert names[2] == "05-corrupt.png", names  # then the failed one
            first = cards.nth(0)
            expect(first.locator("ul.reasons li")).to_contain_text(
                "input already well exposed: mean luma of the input is"
            )
            expect(first.locator("img")).to_have_count(2)
            page.wait_for_function(
                "[...document.images].every(img => img.complete && img.naturalWidth > 0)"
            )
            expect(page.locator("#count-pending")).to_have_text("2")
            expect(page.locator("#count-accepted")).to_have_text("0")

            # The corrupt file would fail any redo the same way: no button offers one.
            expect(cards.nth(2).locator("button")).to_have_count(0)
            # Only models with their weights here are offered for a redo.
            offered = first.locator("[data-role=redo-model] option").all_inner_texts()
            listed = httpx.get(f"{served}/v1/models").json()
            ready = [m["name"] for m in listed if m["ready"] and m["allowed"]]
            assert offered == ready and "darkroom-night" in ready and len(ready) < len(listed)

            first.get_by_role("button", name="Accept").click()
            expect(page.locator("#count-accepted")).to_have_text("1")
            expect(page.locator("#count-pending")).to_have_text("1")
            expect(first.locator("[data-role=decision]")).to_have_text("accepted")
            expect(first.get_by_role("button", name="Accept")).to_be_disabled()
            expect(first.get_by_role("button", name="Reject")).to_be_enabled()

            # A photo no rule flagged, accepted anyway: counted apart from the queue's counts.
            last = cards.nth(4)
            expect(page.locator("#stat-unflagged")).to_be_hidden()
            last.get_by_role("button", name="Accept").click()
            expect(last.locator("[data-role=decision]")).to_have_text("accepted")
            expect(page.locator("#count-unflagged")).to_have_text("1")
            expect(page.locator("#stat-unflagged")).to_be_visible()
            expect(page.locator("#count-accepted")).to_have_text("1")

            # The rule filter narrows the page to that rule's photos (the server filters).
            page.select_option("#filter-rule", "input_well_exposed")
            expect(page.locator("section.card")).to_have_count(2)
            page.select_option("#filter-rule", "")
            expect(page.locator("section.card")).to_have_count(5)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert failed_requests == []
        finally:
            browser.close()
    # Nothing the browser asked for, itself included (an icon), was missing.
    refused = re.findall(r'"[A-Z]+ (\S+) HTTP/[\d.]+" [45]\d\d', serve_log.read_text())
    assert refused == []
    # Reloaded, the decision is still there: it was recorded, not only drawn.
    body = httpx.get(f"{served}/v1/batches/{batch_id}").json()
    assert body["review"]["accepted"] == 1 and body["review"]["pending"] == 1


def test_darkroom_report_writes_a_self_contained_file(
    embedded: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, batch_id = embedded
    out = tmp_path / "report.html"
    done = subprocess.run(
        [str(BIN / "darkroom"), "report", batch_id, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    html = out.read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 8 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert not re.search(r"""(src|href)=["']https?://""", html)  # nothing to fetch: works offline
    assert html.index("02-bright.png") < html.index("05-corrupt.png") < html.index("01-dim.png")
    assert "decisions are" in html and '<button class="accept"' not in html  # a snapshot


def test_darkroom_status_shows_a_jobs_signals_and_a_batchs_review(
    embedded: tuple[dict[str, str], str],
) -> None:
    env, batch_id = embedded
    batch = _darkroom(env, "status", batch_id)
    assert "review: 2 flagged, 1 awaiting" in batch or "review: 2 flagged, 2 awaiting" in batch
    assert "2 input already well exposed" in batch
    home = Path(env["DARKROOM_HOME"])
    with sqlite3.connect(home / "darkroom.db") as db:
        (job_id,) = db.execute(
            "SELECT id FROM jobs WHERE input_key LIKE '%02-bright.png'"
        ).fetchone()
    job = _darkroom(env, "status", str(uuid.UUID(job_id)))
    assert re.search(r"flagged\s+.\s+yes", job)
    assert "input already well exposed: mean luma of the input is" in job
    assert re.search(r"mean_luma\s+.\s+0\.\d+\s+.\s+0\.\d+", job)  # input and result


def _darkroom(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "darkroom"), *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
