"""The benchmarks' own code at a tiny size, on the suite's real services: every job they time
must really have run, once, and every figure they print must come from a finished run."""

from __future__ import annotations

import dataclasses
import io
import uuid
from pathlib import Path

import pytest
import redis
import torch
from rich.console import Console
from sqlalchemy import func, select

from benchmarks import acceleration, queue_overhead, reports, throughput
from benchmarks.flops import count_flops
from benchmarks.stack import Stack, tiny_nafnet
from restoration.architectures.mirnet import load_mirnet
from shared.catalogue import CATALOGUE
from shared.db.tables import Job, JobStatus
from shared.queue import queue_lists

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(service_env: dict[str, str], s3, tmp_path: Path) -> Stack:  # type: ignore[no-untyped-def]
    """The suite's services under a queue prefix of its own (its workers serve only it)."""
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-bench-{uuid.uuid4().hex[:6]}",
    }
    return Stack(env, s3, tmp_path)


def test_queue_overhead_runs_every_job_once(stack: Stack, tmp_path: Path) -> None:
    stack = stack.with_env(DARKROOM_MODEL_DIR=str(tiny_nafnet(tmp_path / "models")))
    report = queue_overhead.run(stack, roundtrips=5, drain=10, jobs=6, batch=50)

    assert report.raw.roundtrips_per_s > 0 and report.raw.drained_per_s > 0
    assert report.serial.jobs_per_s > 0
    assert set(report.batches) == {1, 3} and set(report.local) == {1, 2}
    for finished in [*report.batches.values(), *report.local.values()]:
        assert finished.counts == {"succeeded": 6}
        assert finished.attempts == 6
        assert set(finished.stages) == {"download", "decode", "restore", "encode", "upload"}
    assert report.in_process.jobs_per_s > 0  # it raises unless each of its jobs succeeded
    assert 0 < report.in_process.stages_ms < 1000 / report.in_process.jobs_per_s
    creation = report.creation
    assert (creation.jobs, creation.queued_messages) == (50, 50)
    assert 0 < creation.enqueue_s < creation.request_s
    # The batch's jobs are cancelled and their messages gone, so no reconciler sends them.
    with stack.sessions() as session:
        queued = session.scalar(
            select(func.count()).where(
                Job.input_key.like("batch/%"), Job.status == JobStatus.queued
            )
        )
    assert queued == 0
    out = io.StringIO()
    reports.print_queue_overhead(report, Console(file=out, width=200))
    assert "raw Celery" in out.getvalue() and "batch creation: 50 jobs" in out.getvalue()


def test_throughput_compares_the_model_alone_with_the_whole_path(
    stack: Stack, model_dir: Path
) -> None:
    photos = throughput.make_photos(2, 0.01)
    report = throughput.run(
        stack,
        model="mirnet-lol",
        model_dir=model_dir,
        photos=photos,
        megapixels=0.01,
        concurrency=[1, 2],
        device=torch.device("cpu"),
        repeat=1,
        device_batch_tiles=8,
    )

    assert report.raw.photos_per_s > 0 and report.reference.photos_per_s > 0
    assert report.raw.tflops_per_s is not None and report.raw.tflops_per_s > 0
    assert report.peak_tflops is None  # a CPU has no entry in the peak table
    assert [(run.concurrency, run.device_batch_tiles) for run in report.runs] == [
        (1, 0),
        (2, 0),
        (2, 8),
    ]
    for run in report.runs:
        assert run.finished.counts == {"succeeded": 2}
        assert run.finished.attempts == 2
        assert run.rate.photos_per_s > 0 and 0 < run.model_busy <= 1
        assert run.gpu_utilisation is None  # CPU: not measurable, printed as n/a
        restoring = run.finished.stages["restore"] * 2
        if run.device_batch_tiles:  # the worker merged passes: charged its passes, not its wait
            assert run.finished.device_s < restoring
        else:  # each job held the device for its whole restore
            assert run.finished.device_s == pytest.approx(restoring)
    # The recipe's output is 400 px on its shortest side whatever the photo: 528 x 400 here.
    assert report.reference_out_megapixels == pytest.approx(528 * 400 / 1e6)
    out = io.StringIO()
    reports.print_throughput(report, Console(file=out, width=200))
    assert "raw model limit" in out.getvalue() and "reference recipe" in out.getvalue()
    assert "TFLOP/s" in out.getvalue()
    broker = redis.Redis.from_url(stack.settings.broker_url)
    assert [broker.llen(name) for name in queue_lists(stack.settings.queue_for("mirnet"))] == [0, 0]


def test_acceleration_compares_each_choice_with_eager(model_dir: Path) -> None:
    """The suite's tiny MIRNet at 32-px tiles, two per batch: eager against compiled with
    channels-last (one compile, the same graph as
    tests/restoration/device/test_acceleration.py's)."""
    path = model_dir / "mirnet-lol.pt"
    report = acceleration.run(
        weights={"mirnet-lol": path},
        device=torch.device("cpu"),
        precisions=["fp32"],
        batch_sizes=[2],
        choices=["compile+channels_last"],
        tile=32,
        repeat=1,
        peak=1.0,
    )

    [row] = report.rows
    assert (row.model, row.precision, row.batch_size, row.tile) == ("mirnet-lol", "fp32", 2, 32)
    assert [(c.column, c.compiled) for c in row.cells] == [
        ("eager", False),
        ("compile+channels_last", True),
    ]
    assert all(c.megapixels_per_s > 0 and c.load_s > 0 for c in row.cells)
    assert row.speed_up("eager") == 1
    # One pass is the one full batch of two tiles: the FLOPs of the model on it, nothing else.
    model = load_mirnet(path).eval()
    with torch.inference_mode():
        flops = count_flops(lambda: model(torch.rand(2, 3, 32, 32)))
    assert row.flops_per_pass == flops
    assert report.recommendations == {"mirnet-lol": row}
    assert row.recommended in {"eager", "compile+channels_last"}
    out = io.StringIO()
    reports.print_acceleration(report, Console(file=out, width=250))
    text = out.getvalue()
    assert "catalogue values" in text and f"mirnet-lol: acceleration='{row.recommended}'" in text
    assert "% of 1 peak" in text


@pytest.mark.parametrize(
    ("rates", "recommended"),
    [
        ({"eager": 1.0, "channels_last": 1.04, "compile": 1.08}, "compile"),
        (
            {"eager": 1.0, "channels_last": 1.17, "compile": 1.14, "compile+channels_last": 1.18},
            "channels_last",
        ),
        (
            {"eager": 1.0, "channels_last": 0.9, "compile+channels_last": 1.5},
            "compile+channels_last",
        ),
        ({"eager": 1.0, "compile": 1.04}, "eager"),
    ],
)
def test_a_costlier_choice_must_be_clearly_faster(
    rates: dict[str, float], recommended: str
) -> None:
    cells = [
        acceleration.Cell(column, rate, 1 / rate, 0.0, "compile" in column)
        for column, rate in rates.items()
    ]
    row = acceleration.Row("mirnet-lol", "bf16", 4, 512, 10**12, cells)
    assert row.recommended == recommended
    assert row.speed_up(recommended) == rates[recommended]


def test_the_gpu_check_runs_on_the_cpu(tmp_path: Path) -> None:
    """``scripts/gpu-check.sh --device cpu --quick``: the same script a GPU machine runs, so it
    cannot rot before one is at hand; every check it makes passes on the CPU."""
    import json
    import subprocess

    report = tmp_path / "gpu-check.json"
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            str(repo / "scripts" / "gpu-check.sh"),
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=repo,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads(report.read_text())["checks"]
    assert {check["defect"] for check in checks} >= {"1", "4", "5", "7", "8", "9", "10", "11"}
    assert all(check["ok"] for check in checks), checks


def test_a_mig_slice_is_compared_with_its_share_of_the_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from benchmarks.flops import peak_tflops

    monkeypatch.setattr(
        torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    )
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device=None: SimpleNamespace(multi_processor_count=42),
    )
    assert peak_tflops(torch.device("cuda")) == pytest.approx(312.0 * 42 / 108)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-40GB")
    assert peak_tflops(torch.device("cuda")) == 312.0


def test_the_heuristics_column_runs_on_a_thread_of_its_own(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cuDNN's plan cache is per thread: measured on the thread that ran the autotuned columns,
    the heuristics column would reuse their plans. Every call of its own (load, warm-up,
    timing) runs on one other thread."""
    import threading

    from benchmarks.models import ModelPass

    threads: dict[str, set[int]] = {}
    real_seconds = ModelPass.seconds

    def seconds(self: ModelPass, repeat: int) -> float:
        column = str(id(self.restorer))
        threads.setdefault(column, set()).add(threading.get_ident())
        return real_seconds(self, repeat)

    monkeypatch.setattr(ModelPass, "seconds", seconds)
    entry = dataclasses.replace(CATALOGUE["mirnet-lol"], tile=32)
    row = acceleration.measure_row(
        entry,
        model_dir / "mirnet-lol.pt",
        torch.device("cpu"),
        "fp32",
        2,
        ["eager", acceleration.HEURISTICS],
        repeat=2,
    )
    assert [cell.column for cell in row.cells] == ["eager", acceleration.HEURISTICS]
    idents = list(threads.values())
    assert len(idents) == 2 and all(len(ident) == 1 for ident in idents)
    assert idents[0] != idents[1]
    assert threading.get_ident() in idents[0] | idents[1]
