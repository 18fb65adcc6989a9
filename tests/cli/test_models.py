"""``darkroom models``: add, pull, list and verify against a real model store folder."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from spandrel.architectures.NAFNet import NAFNet

from restoration.cache import RestorerCache
from shared.catalogue import CATALOGUE, ModelStore
from shared.config import Settings
from shared.storage import make_storage
from tests.cli.test_photos import darkroom
from tests.conftest import shared_dir
from tests.restoration.architectures.test_published_models import (
    manifest,
    read_png16,
    reference_input,
    tolerance,
)

pytestmark = pytest.mark.slow  # runs the darkroom CLI: seconds a test


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DARKROOM_MODEL_DIR": str(tmp_path / "store"), "DARKROOM_DEVICE": "cpu"}


@pytest.fixture
def nafnet_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = NAFNet(width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1])
    path = tmp_path / "my-deblur.pth"
    torch.save({"params": model.state_dict()}, path)
    return path


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback, standing in for a publisher's download link."""
    root = tmp_path / "published"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_add_registers_a_spandrel_checkpoint_and_a_job_can_use_it(
    nafnet_file: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    added = darkroom(
        "models",
        "add",
        str(nafnet_file),
        "--name",
        "my-deblur",
        "--task",
        "deblur",
        env=env,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert "NAFNet" in added.stdout
    listed = darkroom("models", "list", env=env, cwd=tmp_path)
    row = next(line for line in listed.stdout.splitlines() if line.split()[:1] == ["my-deblur"])
    assert row.split()[2] == "spandrel"  # its family: the queue darkroom.spandrel

    photo = tmp_path / "in" / "shot.png"
    photo.parent.mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (90, 60, 30)).save(photo)
    run = darkroom(
        "submit", str(photo.parent), "--model", "my-deblur", "--out", "out", env=env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert Image.open(tmp_path / "out" / "shot.png").size == (40, 30)


def test_add_refuses_files_spandrel_does_not_recognise(tmp_path: Path, env: dict[str, str]) -> None:
    junk = tmp_path / "junk.pth"
    torch.save({"weight": torch.zeros(3, 3)}, junk)
    result = darkroom(
        "models", "add", str(junk), "--name", "junk", "--task", "denoise", env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    assert "not a checkpoint spandrel recognises" in " ".join(result.stderr.split())
    assert not (tmp_path / "store" / "junk.json").exists()


def test_pull_verifies_sha256_and_verify_catches_tampering(
    file_server: tuple[str, Path], nafnet_file: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    base, root = file_server
    published = root / "NAFNet-GoPro-width32.pth"
    published.write_bytes(nafnet_file.read_bytes())
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    url = f"{base}/{published.name}"

    wrong = darkroom(
        "models", "pull", "nafnet-gopro", "--url", url, "--sha256", "0" * 64, env=env, cwd=tmp_path
    )
    assert wrong.returncode == 1 and "expected" in wrong.stderr
    assert not (tmp_path / "store" / published.name).exists()

    good = darkroom(
        "models", "pull", "nafnet-gopro", "--url", url, "--sha256", digest, env=env, cwd=tmp_path
    )
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "store" / published.name).read_bytes() == published.read_bytes()
    assert darkroom("models", "verify", "nafnet-gopro", env=env, cwd=tmp_path).returncode == 0

    (tmp_path / "store" / published.name).write_bytes(b"tampered")
    tampered = darkroom("models", "verify", "nafnet-gopro", env=env, cwd=tmp_path)
    assert tampered.returncode == 1 and "mismatch" in tampered.stdout


def test_pull_without_a_direct_link_says_where_to_get_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = darkroom("models", "pull", "retinexformer-lol", env=env, cwd=tmp_path)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "Retinexformer" in message and "--url" in message


PACK_WEIGHTS = shared_dir() / "reference-models" / "weights"


def test_pull_installs_the_published_zero_dce_file_and_refuses_any_other(
    file_server: tuple[str, Path], tmp_path: Path, env: dict[str, str]
) -> None:
    """The catalogue's digest is the authors' file's: the real file is installed, a file with
    another digest at the same link is refused and nothing is stored."""
    base, root = file_server
    url = f"{base}/Epoch99.pth"
    (root / "Epoch99.pth").write_bytes((PACK_WEIGHTS / "sgz_Epoch99.pth").read_bytes())
    other = darkroom("models", "pull", "zero-dce", "--url", url, env=env, cwd=tmp_path)
    assert other.returncode == 1
    assert CATALOGUE["zero-dce"].sha256 in " ".join(other.stderr.split())
    assert not (tmp_path / "store" / "zero-dce_Epoch99.pth").exists()

    (root / "Epoch99.pth").write_bytes((PACK_WEIGHTS / "zero-dce_Epoch99.pth").read_bytes())
    pulled = darkroom("models", "pull", "zero-dce", "--url", url, env=env, cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert (
        "CC BY-NC 4.0" in pulled.stdout and "DARKROOM_ALLOW_NONCOMMERCIAL_MODELS" in pulled.stdout
    )
    installed = tmp_path / "store" / "zero-dce_Epoch99.pth"
    assert installed.read_bytes() == (PACK_WEIGHTS / "zero-dce_Epoch99.pth").read_bytes()
    assert darkroom("models", "verify", "zero-dce", env=env, cwd=tmp_path).returncode == 0


def test_pull_from_a_local_copy_verifies_it_too(tmp_path: Path, env: dict[str, str]) -> None:
    wrong = darkroom(
        "models",
        "pull",
        "sci-medium",
        "--file",
        str(PACK_WEIGHTS / "sci_difficult.pt"),
        env=env,
        cwd=tmp_path,
    )
    assert wrong.returncode == 1 and not (tmp_path / "store" / "sci_medium.pt").exists()
    good = darkroom(
        "models",
        "pull",
        "sci-medium",
        "--file",
        str(PACK_WEIGHTS / "sci_medium.pt"),
        env=env,
        cwd=tmp_path,
    )
    assert good.returncode == 0, good.stderr
    listed = darkroom("models", "list", env=env, cwd=tmp_path)
    row = next(line for line in listed.stdout.splitlines() if "sci-medium" in line)
    assert "yes" in row and "MIT" in row


def test_list_says_plainly_which_models_are_non_commercial(
    tmp_path: Path, env: dict[str, str]
) -> None:
    listed = darkroom("models", "list", env=env, cwd=tmp_path)
    row = next(line for line in listed.stdout.splitlines() if line.split()[:1] == ["zero-dce"])
    assert "NON-COMMERCIAL" in row and "refused" in row
    allowed = darkroom(
        "models", "list", env={**env, "DARKROOM_ALLOW_NONCOMMERCIAL_MODELS": "true"}, cwd=tmp_path
    )
    row = next(line for line in allowed.stdout.splitlines() if line.split()[:1] == ["zero-dce"])
    assert "NON-COMMERCIAL" in row and "allowed" in row


def test_list_fits_an_80_column_terminal_and_show_has_the_rest(
    tmp_path: Path, env: dict[str, str]
) -> None:
    listed = darkroom("models", "list", env={**env, "COLUMNS": "80"}, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in CATALOGUE:  # every name whole, on a line of its own: one line a model
        rows = [line for line in lines if line.split()[:1] == [name]]
        assert len(rows) == 1, name
    assert len(lines) <= len(CATALOGUE) + 6  # header, rule, blank lines and the two notes
    shown = darkroom("models", "show", "zero-dce", env={**env, "COLUMNS": "80"}, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    words = " ".join(shown.stdout.split())
    assert "CC BY-NC 4.0" in words and "zero-dce_Epoch99.pth" in words
    unknown = darkroom("models", "show", "no-such-model", env=env, cwd=tmp_path)
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr


def test_add_accepts_the_published_dncnn_file_and_it_restores_the_reference(
    tmp_path: Path, env: dict[str, str]
) -> None:
    added = darkroom(
        "models",
        "add",
        str(PACK_WEIGHTS / "kair_dncnn_color_blind.pth"),
        "--name",
        "my-dncnn",
        "--task",
        "denoise",
        env=env,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    assert "DnCNN" in added.stdout

    settings = Settings(home=tmp_path, model_dir=tmp_path / "store", device="cpu")
    store = ModelStore(settings, make_storage(settings))
    restorer = RestorerCache(settings, store).get(store.resolve("my-dncnn"))
    reference = manifest()["dncnn-color-blind"]["outputs"][0]
    restored = restorer.restore(reference_input(reference))
    expected = read_png16(shared_dir() / "reference-models" / reference["file"])
    assert np.abs(restored - expected).max() <= tolerance("dncnn-color-blind")


def test_add_refuses_the_ffdnet_file_spandrel_misdetects(
    tmp_path: Path, env: dict[str, str]
) -> None:
    refused = darkroom(
        "models",
        "add",
        str(PACK_WEIGHTS / "kair_ffdnet_color.pth"),
        "--name",
        "my-ffdnet",
        "--task",
        "denoise",
        env=env,
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert "12 input and 12 output channels" in message and "RGB" in message
    assert "Traceback" not in refused.stderr
    assert not list((tmp_path / "store").glob("my-ffdnet*"))
    assert "my-ffdnet" not in darkroom("models", "list", env=env, cwd=tmp_path).stdout
