"""The benchmarks' printed tables, apart from the measuring so either can change alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from rich.console import Console
from rich.table import Table

from benchmarks.flops import share_of_peak

if TYPE_CHECKING:  # the benchmarks import this module to print: no import back at run time
    from benchmarks import acceleration, queue_overhead, throughput
    from benchmarks.stack import Finished


def print_throughput(report: throughput.Report, console: Console) -> None:
    console.print(_throughput_paths(report))
    console.print(_throughput_stages(report))
    if len(report.runs) > 1:
        first = report.runs[0]
        for run in report.runs[1:]:
            console.print(
                f"{run.label} / {first.label}: "
                f"{run.rate.photos_per_s / first.rate.photos_per_s:.2f}x photos/s"
            )


def _throughput_paths(report: throughput.Report) -> Table:
    raw = report.raw
    raw_tflops = (
        f"{raw.tflops_per_s:.3g} {share_of_peak(raw.tflops_per_s, report.peak_tflops)}".strip()
        if raw.tflops_per_s is not None
        else "-"
    )
    table = Table(
        "path",
        "photos/s",
        "MP/s",
        "TFLOP/s",
        "ratio to raw",
        "model busy",
        "GPU util",
        title=f"{report.model} on {report.device}: {report.photos} photos of "
        f"{report.megapixels:g} MP",
    )
    table.add_row(
        "(a) raw model limit: forward passes on tiles on the device",
        f"{raw.photos_per_s:.3f}",
        f"{raw.megapixels_per_s:.2f}",
        raw_tflops,
        "1",
        "100%",
        "-",
    )
    for run in report.runs:
        gpu = f"{run.gpu_utilisation:.0f}%" if run.gpu_utilisation is not None else "n/a"
        table.add_row(
            f"(b) Darkroom end to end, {run.label}",
            f"{run.rate.photos_per_s:.3f}",
            f"{run.rate.megapixels_per_s:.2f}",
            "-",
            f"{run.rate.photos_per_s / raw.photos_per_s:.2f}",
            f"{run.model_busy:.0%}",
            gpu,
        )
    table.add_row(
        report.reference_label,
        f"{report.reference.photos_per_s:.3f}",
        f"{report.reference.megapixels_per_s:.2f} (input)",
        "-",
        f"{report.reference.photos_per_s / raw.photos_per_s:.2f}",
        "-",
        "-",
    )
    return table


def _throughput_stages(report: throughput.Report) -> Table:
    stages = Table(
        "worker concurrency", "statuses", "wall s", *report.runs[0].finished.stages,
        title="mean seconds per photo, by stage",
    )  # fmt: skip
    for run in report.runs:
        stages.add_row(
            run.label.removeprefix("worker concurrency "),
            ", ".join(f"{k} {v}" for k, v in run.finished.counts.items()),
            f"{run.finished.seconds:.2f}",
            *(f"{seconds:.3f}" for seconds in run.finished.stages.values()),
        )
    return stages


def print_queue_overhead(report: queue_overhead.Report, console: Console) -> None:
    console.print(_queue_paths(report))
    console.print(_queue_stages(report))
    if 1 in report.batches and 3 in report.batches:
        one, three = report.batches[1], report.batches[3]
        console.print(f"pipelined (3) / serial (1) worker: {one.seconds / three.seconds:.2f}x")
    creation = report.creation
    console.print(
        f"batch creation: {creation.jobs:,} jobs in {creation.request_s:.2f} s "
        f"(enqueue {creation.enqueue_s:.2f} s, validation and insert "
        f"{creation.request_s - creation.enqueue_s:.2f} s); "
        f"{creation.queued_messages:,} messages queued"
    )


def _queue_paths(report: queue_overhead.Report) -> Table:
    raw, serial = report.raw, report.serial
    table = Table("path", "rate", "ratio to raw Celery round trips", title="Queue overhead")
    table.add_row(
        "raw Celery apply_async().get(), one at a time",
        f"{raw.roundtrips_per_s:,.0f}/s (p50 {raw.roundtrip_p50_ms:.2f} ms)",
        "1",
    )
    table.add_row("raw Celery, sent at once then drained", f"{raw.drained_per_s:,.0f}/s", "-")
    table.add_row(
        "Darkroom job, one at a time (API -> worker -> S3 -> DB)",
        f"{serial.jobs_per_s:,.1f}/s (p50 {serial.p50_ms:.1f} ms)",
        f"{serial.jobs_per_s / raw.roundtrips_per_s:.3f}",
    )
    for concurrency, finished in report.batches.items():
        total = sum(finished.counts.values())
        table.add_row(
            f"Darkroom batch of {total}, worker concurrency {concurrency}",
            f"{total / finished.seconds:,.1f}/s",
            f"{total / finished.seconds / raw.roundtrips_per_s:.3f}",
        )
    for processes, finished in report.local.items():
        total = sum(finished.counts.values())
        table.add_row(
            f"Darkroom batch of {total}, local object folder (no S3), "
            f"{processes} worker process{'es' if processes > 1 else ''}",
            f"{total / finished.seconds:,.1f}/s",
            f"{total / finished.seconds / raw.roundtrips_per_s:.3f}",
        )
    inline = report.in_process
    table.add_row(
        "the same jobs run by run_job in one process: no API, no broker, no Celery "
        f"(stages {inline.stages_ms:.1f} ms of {1000 / inline.jobs_per_s:.1f} ms a job)",
        f"{inline.jobs_per_s:,.1f}/s",
        f"{inline.jobs_per_s / raw.roundtrips_per_s:.3f}",
    )
    return table


def _queue_stages(report: queue_overhead.Report) -> Table:
    stages = Table("worker concurrency", "statuses", *report.batches[1].stages, title="mean s/job")
    rows: list[tuple[str, Finished]] = [(str(n), f) for n, f in report.batches.items()]
    rows += [(f"1 x {n} processes, local", f) for n, f in report.local.items()]
    for label, finished in rows:
        stages.add_row(
            label,
            ", ".join(f"{k} {v}" for k, v in finished.counts.items()),
            *(f"{seconds * 1000:.1f} ms" for seconds in finished.stages.values()),
        )
    return stages


def print_acceleration(report: acceleration.Report, console: Console) -> None:
    columns = [cell.column for cell in report.rows[0].cells]
    console.print(_acceleration_rates(report, columns))
    console.print(_acceleration_loads(report, columns))
    console.print(_acceleration_flops(report, columns))
    console.print(
        "catalogue values for this device (ModelEntry.acceleration on CUDA, "
        "cpu_acceleration on a CPU):"
    )
    for name, row in report.recommendations.items():
        best = row.recommended
        console.print(
            f"  {name}: acceleration={best!r} ({row.precision}, batch {row.batch_size}: "
            f"{row.speed_up(best):.2f}x eager, {row.tflops_per_s(best):.3g} TFLOP/s"
            + (
                f", {share_of_peak(row.tflops_per_s(best), report.peak_tflops)}"
                if report.peak_tflops
                else ""
            )
            + ")"
        )


def _row_key(row: acceleration.Row) -> tuple[str, str, str]:
    return row.model, row.precision, str(row.batch_size)


def _acceleration_rates(report: acceleration.Report, columns: list[str]) -> Table:
    title = (
        f"{report.label}, torch {torch.__version__}: megapixels of tiles per second "
        f"(speed-up over eager)"
    )
    rates = Table("model", "precision", "batch", "tile", *columns, "recommended", title=title)
    for row in report.rows:
        rates.add_row(
            *_row_key(row),
            str(row.tile),
            *(f"{c.megapixels_per_s:.3f} ({row.speed_up(c.column):.2f}x)" for c in row.cells),
            row.recommended,
        )
    return rates


def _acceleration_loads(report: acceleration.Report, columns: list[str]) -> Table:
    loads = Table(
        "model", "precision", "batch", *columns, title="seconds to load and warm up (compile)"
    )
    for row in report.rows:
        loads.add_row(
            *_row_key(row),
            *(
                f"{c.load_s:.1f}" + ("" if c.compiled or "compile" not in c.column else " (eager)")
                for c in row.cells
            ),
        )
    return loads


def _acceleration_flops(report: acceleration.Report, columns: list[str]) -> Table:
    flops = Table(
        "model",
        "precision",
        "batch",
        "GFLOP per pass",
        *(f"{column} TFLOP/s" for column in columns),
        title="achieved TFLOP/s"
        + (
            f" against a {report.peak_tflops:g} TFLOP/s dense bf16/fp16 peak"
            if report.peak_tflops
            else ""
        ),
    )
    for row in report.rows:
        flops.add_row(
            *_row_key(row),
            f"{row.flops_per_pass / 1e9:.3g}",
            *(
                f"{row.tflops_per_s(c.column):.3g} "
                f"{share_of_peak(row.tflops_per_s(c.column), report.peak_tflops)}".strip()
                for c in row.cells
            ),
        )
    return flops
