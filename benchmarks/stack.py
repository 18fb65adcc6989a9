"""The real services a benchmark drives, started the way operators run them.

PostgreSQL (a fresh database, migrated), Redis (a broker URL, queues under a fresh prefix), an
S3 endpoint (a ``moto_server`` started here, or one given), the API in-process (FastAPI's
``TestClient``: the whole request path without a socket) and ``darkroom worker`` processes
started with the same environment variables a deployment sets. The test suite builds a
:class:`Stack` from its own fixtures instead, so the benchmarks' code runs there at a tiny size.
"""

from __future__ import annotations

import io
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import FINISHED, STAGES, Job, JobStatus
from shared.storage import make_storage
from tests import services
from tests.conftest import settings_from_env


@dataclass
class Stack:
    """One configuration shared by the benchmark process and the workers it starts."""

    env: dict[str, str]
    s3: Any
    """A boto3 S3 client on the endpoint the workers use."""
    workdir: Path
    settings: Settings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = settings_from_env(self.env)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.settings.database_url)

    def with_env(self, **overrides: str) -> Stack:
        return Stack({**self.env, **overrides}, self.s3, self.workdir)

    def put_objects(self, objects: dict[str, bytes]) -> None:
        if self.settings.storage_backend == "local":  # the folder the workers share
            storage = make_storage(self.settings)
            for key, body in objects.items():
                storage.put(self.settings.input_bucket, key, body)
            return
        for key, body in objects.items():
            self.s3.put_object(Bucket=self.settings.input_bucket, Key=key, Body=body)

    @contextmanager
    def worker(self, concurrency: int, queues: str, **env: str) -> Iterator[Path]:
        """A ``darkroom worker`` process holding ``concurrency`` jobs; yields its log file."""
        log = self.workdir / f"worker-{uuid.uuid4().hex[:6]}.log"
        proc = services.start_worker(
            {**self.env, **env},
            log,
            queues,
            timeout=900,  # a worker preloading a model to compile (DARKROOM_ACCELERATION) is slow
            pool="threads" if concurrency > 1 else "solo",
            concurrency=concurrency,
        )
        try:
            yield log
        finally:
            services.stop(proc, timeout=30)


@contextmanager
def local_stack(broker_url: str, model_dir: Path | None, **env: str) -> Iterator[Stack]:
    """A fresh PostgreSQL database and a ``moto_server`` (dropped and stopped afterwards), a
    fresh queue prefix on ``broker_url`` and fresh buckets."""
    from shared.db.migrate import upgrade

    workdir = Path(tempfile.mkdtemp(prefix="darkroom-bench-"))
    with services.scratch_database("darkroom_bench") as database_url:
        upgrade(database_url)
        moto, endpoint = services.start_moto(workdir / "moto.log")
        try:
            base = {
                **services.darkroom_env(
                    workdir / "home", database_url, broker_url, endpoint, "darkroom-bench"
                ),
                **({"DARKROOM_MODEL_DIR": str(model_dir)} if model_dir else {}),
                **env,
            }
            s3 = services.s3_client(
                endpoint, [base["DARKROOM_INPUT_BUCKET"], base["DARKROOM_OUTPUT_BUCKET"]]
            )
            yield Stack(base, s3, workdir)
        finally:
            endpoint.close()
            services.stop(moto)


def tiny_mirnet(folder: Path, features: int = 8) -> Path:
    """A small MIRNet with random weights in the published checkpoint layout, as
    ``mirnet-lol.pt``: the real loading and tiled inference path at a cost a CPU shrugs off.
    Returns the folder (``DARKROOM_MODEL_DIR``)."""
    import torch

    from restoration.architectures.mirnet import MIRNet, save_mirnet_checkpoint

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    model = MIRNet(num_features=features, number_msrb=1, number_rrg=1)
    save_mirnet_checkpoint(model, folder / "mirnet-lol.pt")
    return folder


def tiny_nafnet(folder: Path) -> Path:
    """A NAFNet of width 8 with one block per level and random weights, as the file
    ``nafnet-gopro`` expects: loaded by spandrel like the published one, about a millisecond
    on a 32x32 image, so what is measured around it is the queue, not the model. Returns the
    folder (``DARKROOM_MODEL_DIR``)."""
    import torch
    from spandrel.architectures.NAFNet import NAFNet

    from shared.catalogue import CATALOGUE

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    model = NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    torch.save(model.state_dict(), folder / CATALOGUE["nafnet-gopro"].weights_file)
    return folder


def jpeg(width: int, height: int, seed: int = 0, quality: int = 92) -> bytes:
    """A dim, noisy JPEG of the given size (structure for the model, realistic file size)."""
    rng = np.random.default_rng(seed)
    gradient = np.linspace(10, 90, width, dtype=np.float32)[None, :, None]
    pixels = gradient + rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass(frozen=True)
class Finished:
    seconds: float
    """From submission until the last job of the batch finished."""
    counts: dict[str, int]
    stages: dict[str, float]
    """Mean seconds per job of each stage, over succeeded jobs."""
    attempts: int
    """Attempts summed over the jobs (equal to the job count when each ran once)."""
    device_s: float
    """Device seconds summed over succeeded jobs: how long the model's device was busy."""


def wait_batch(
    sessions: sessionmaker[Session], batch_id: uuid.UUID, started: float, timeout: float
) -> Finished:
    """Poll the database (as ``darkroom submit --wait`` does) until every job of the batch is
    finished; ``started`` is the ``perf_counter`` at submission."""
    finished_statuses = [status.value for status in FINISHED]
    deadline = time.monotonic() + timeout
    with sessions() as session:
        total = session.scalar(select(func.count()).where(Job.batch_id == batch_id)) or 0
    while True:
        with sessions() as session:
            done = session.scalar(
                select(func.count()).where(
                    Job.batch_id == batch_id, Job.status.in_(finished_statuses)
                )
            )
        if done == total:
            seconds = time.perf_counter() - started
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done}/{total} jobs finished after {timeout}s")
        time.sleep(0.01)
    with sessions() as session:
        rows = list(session.scalars(select(Job).where(Job.batch_id == batch_id)))
    counts: dict[str, int] = {}
    for job in rows:
        counts[JobStatus(job.status).value] = counts.get(JobStatus(job.status).value, 0) + 1
    succeeded = [job for job in rows if job.status == JobStatus.succeeded]
    stages = {
        stage: float(np.mean([job.timings[stage] or 0.0 for job in succeeded]))
        for stage in STAGES
        if succeeded
    }
    device = sum(job.device_s or 0.0 for job in succeeded)
    return Finished(seconds, counts, stages, sum(job.attempts for job in rows), device)


def submit_batch(client: Any, keys: Sequence[str], model: str) -> uuid.UUID:
    """``POST /v1/batches`` with explicit keys; returns the batch id."""
    response = client.post("/v1/batches", json={"keys": list(keys), "model": model})
    if response.status_code != 202:
        raise RuntimeError(f"batch refused: {response.status_code} {response.text}")
    return uuid.UUID(response.json()["id"])
