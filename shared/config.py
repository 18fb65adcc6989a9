"""The one place configuration is read from.

Every process builds a :class:`Settings` from ``DARKROOM_*`` environment variables (or a ``.env``
file). The defaults describe the embedded mode: SQLite, a local object folder and the worker
running in-process, so a fresh checkout works with no server installed. docker-compose and
production override them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(".darkroom")

DEFAULT_TENANT = "default"
"""The tenant everything belongs to while API keys are off (``DARKROOM_AUTH=none``)."""

Acceleration = Literal["eager", "channels_last", "compile", "compile+channels_last"]
"""How a worker runs a model (``restoration.device.acceleration``): as written, with channels-last
weights and inputs, compiled by ``torch.compile`` for its tile shape, or both. A setting's value
type, so it lives here; catalogue entries name one too."""
ACCELERATIONS: tuple[Acceleration, ...] = get_args(Acceleration)


def review_threshold(rule: str, value: float) -> float:
    """``value`` as a review rule's threshold; ``ValueError`` with a sentence for a person if
    it is not a finite number.

    Every threshold passes here, wherever it comes from (the server's settings, a tenant's, a
    batch's or a job's option ``review``, a redo's): ``NaN`` compares false with everything, so
    its rule would silently never trip, and PostgreSQL's ``json`` refuses ``NaN`` and the
    infinities (``1e400`` parses as one), so storing one would fail as a server error."""
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"review rule {rule!r} takes a finite number as threshold, not {number}")
    return number


class ReviewThresholds(BaseModel):
    """The threshold of each review rule (``shared.review.rules``): a job whose quality
    signals trip one is flagged for a person, with the rule's sentence. ``None`` turns a rule
    off. Tenants (``darkroom tenants review``) and batches (option ``review``) override these
    per rule. Set one as ``DARKROOM_REVIEW__STILL_DARK=0.2``, or ``...=off``.

    The defaults were chosen on photos made from BSDS500 (``benchmarks/review_flags.py --set
    tune``), never on the evaluation sets the benchmark reports (``docs/review.md``)."""

    model_config = ConfigDict(extra="forbid")

    still_dark: float | None = 0.25
    """Mean luma of the result below this."""
    lights_blown: float | None = 2.0
    """Share of clipped pixels grew by more than this many percentage points."""
    noise_amplified: float | None = 1.5
    """Noise relative to brightness of the result more than this many times the input's."""
    colour_shifted: float | None = 3.0
    """Colour cast of the result (strongest over weakest channel's edge contrast) above this."""
    input_blurred: float | None = 0.255
    """Sharpness of the result (a Laplacian of Gaussian's spread, ``imaging.quality``) below
    this: the model could not undo the input's blur."""
    input_too_dark: float | None = 0.03
    """Mean luma of the input below this: too little light left to restore."""
    input_well_exposed: float | None = 0.32
    """Mean luma of the input above this: restoring a photo already exposed may not help."""

    @field_validator("*", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        """``off`` (or ``false``, or nothing) in an environment variable turns a rule off."""
        if isinstance(value, str) and value.strip().lower() in ("", "off", "false", "none"):
            return None
        return value

    @field_validator("*")
    @classmethod
    def _finite(cls, value: float | None, info: ValidationInfo) -> float | None:
        return None if value is None else review_threshold(info.field_name or "?", value)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DARKROOM_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    # Where embedded-mode state lives (SQLite file, local objects, model weights).
    home: Path = DEFAULT_HOME

    database_url: str = ""
    """SQLAlchemy URL. Empty means SQLite under ``home``."""

    execution: Literal["inline", "celery"] = "inline"
    """``inline`` runs jobs in the submitting process (embedded mode); ``celery`` enqueues them."""
    broker_url: str = "redis://127.0.0.1:6379/0"
    queue_prefix: str = "darkroom"
    """Queues are named ``<prefix>.<model family>`` so GPU nodes subscribe to what they serve."""
    visibility_timeout_s: int = 4 * 3600
    """Redis redelivers unacknowledged messages after this; keep it above the longest job."""

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    """Root of the local backend. Empty means ``home/objects``."""
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    """Endpoint used to sign URLs handed to clients (SigV4 signs the Host header)."""
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    input_bucket: str = "darkroom-inputs"
    output_bucket: str = "darkroom-outputs"
    allowed_input_buckets: list[str] = Field(default_factory=list)
    """Buckets jobs may read from besides ``input_bucket``."""
    presign_expiry_s: int = 3600
    s3_connect_timeout_s: float = 5.0
    s3_read_timeout_s: float = 60.0
    """A request to the object store that stalls this long fails (and is retried): a hung
    endpoint must not hold a worker forever."""
    s3_max_attempts: int = 3
    """Tries botocore makes for one request (5xx, throttling, resets) before the job's own
    retry with backoff takes over."""

    model_dir: Path | None = None
    """Local folder of checkpoints, named as the catalogue says. Empty: ``home/models``."""
    model_bucket: str | None = None
    """Bucket of the model store: checkpoints under ``model_prefix`` are fetched into model_dir."""
    model_prefix: str = "models/"
    preload_models: list[str] = Field(default_factory=list)
    """Models a worker loads at start instead of on its first job."""
    allow_noncommercial_models: bool = False
    """Let jobs (and ``darkroom eval``) use models whose weights are licensed for non-commercial
    use only, or carry no licence (``ModelEntry.noncommercial``: Zero-DCE, Zero-DCE++, the KAIR
    DnCNN file). Off, naming one is refused with ``model_not_allowed`` before anything is
    stored or queued; they stay listed, marked, so nobody uses one without choosing to."""
    model_cache_mb: int = 8192
    """Weights kept loaded per worker; least recently used models are dropped beyond this."""
    tile_batch_size: int = 4
    """Tiles per forward pass of one job."""
    device_batch_tiles: int = Field(default=0, ge=0)
    """Most tiles in one forward pass when a worker holding several jobs merges their tile
    batches (same model, task and tile shape) into one pass (``restoration.device.batching``); 0 or
    1: no merging, each job holds the device for its whole restore. Only used with
    ``worker_concurrency`` above 1; a merged pass needs this many tiles' activations at once."""
    device: str = "auto"
    """``auto`` picks CUDA when available, else CPU."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """``auto``: bf16 (else fp16) autocast on CUDA where the model supports it, fp32 on CPU."""
    acceleration: Literal["catalogue"] | Acceleration = "catalogue"
    """``catalogue``: each model as its catalogue entry says for the device
    (``ModelEntry.acceleration`` on CUDA, ``cpu_acceleration`` on a CPU);
    any other value (``eager``, ``channels_last``, ``compile``, ``compile+channels_last``) for
    every model. Compiling happens when a model loads (``preload_models``: at worker start)."""
    cpu_allocator: Literal["keep", "system"] = "keep"
    """``keep``: a process that restores tells glibc's malloc to keep freed memory for reuse
    (``restoration.device.allocator``) instead of returning each large activation buffer to the
    kernel and faulting it back in, zeroed, on the next tile; ``system``: malloc's own defaults
    (also what runs under an ``LD_PRELOAD``-ed jemalloc or tcmalloc, which ignore it)."""
    cudnn_benchmark: bool = True
    """On CUDA, let cuDNN time its algorithms for the tile shapes a model is warmed up on and
    keep the fastest (``torch.backends.cudnn.benchmark``); other shapes keep its heuristics."""
    worker_concurrency: int = Field(default=1, ge=1)
    """Jobs a worker process holds at once. Above 1, `darkroom worker` uses Celery's threads
    pool: while one job is on the model, the others download, decode, encode and upload. One
    restore runs at a time per process (one device), or with ``device_batch_tiles`` one forward
    pass at a time, shared by the tiles of the jobs restoring; 1 keeps the solo pool."""

    worker_metrics_port: int = Field(default=9300, ge=0, le=65535)
    """Each ``darkroom worker`` process serves Prometheus metrics here (``workers.metrics``);
    ``--gpus`` gives its i-th child this port plus i; 0: none."""
    worker_metrics_host: str = "0.0.0.0"
    """Address the worker's metrics listen on (all interfaces: Prometheus scrapes the pod)."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000
    """Images above this many pixels are refused before decoding (decompression bombs)."""
    max_aspect_ratio: float = 50.0
    """Images longer than this many times their width (or wider than their height) are refused
    before decoding: a thin strip is a few pixels but thousands of padded model tiles."""
    max_batch_size: int = 50_000
    default_jpeg_quality: int = 95
    job_soft_time_limit_s: int = 3000
    """A job still running after this fails with ``time_limit_exceeded`` at its next check."""
    job_time_limit_s: int = 3600
    """Hard kill (prefork pool only; the solo pool relies on the soft limit)."""
    max_attempts: int = 3
    """A job is retried on transient errors (or redelivered) at most this many times."""
    heartbeat_interval_s: float = 10.0
    """How often a worker records that it is still running a job."""
    stale_after_s: float = 120.0
    """A running job with no heartbeat for this long has lost its worker and is requeued."""
    maintenance_interval_s: float = 30.0
    """How often the elected process (one per queue prefix, ``workers.maintenance``: a worker or
    ``darkroom maintenance``) looks for such jobs, and for queued jobs the broker lost."""
    reconcile_after_s: float = 60.0
    """A job queued this long whose message is not in Redis is sent again."""
    retry_backoff_s: float = 2.0
    retry_backoff_max_s: float = 60.0
    database_retry_s: float = 60.0
    """How long a worker keeps retrying the database write that records a job's outcome
    (success, failure, retry) through an outage, before leaving the job to the reaper."""

    shared_dir: Path = Path("../shared")
    """Evaluation images and reference data (``darkroom eval``, tests); outside the repository."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000

    auth: Literal["none", "api_key"] = "none"
    """``api_key``: every request needs ``Authorization: Bearer <key>`` and sees only its
    tenant's work. ``none`` (embedded mode, trusted networks): one tenant, ``default``."""
    rate_limit_per_minute: int = 600
    """Jobs a tenant may submit per minute (a batch counts each image); 0: no limit."""
    max_active_jobs: int = 100_000
    """Jobs a tenant may have queued or running at once; 0: no limit."""
    webhook_allow_private: bool = False
    """Allow webhook targets on loopback and private networks (tests, single-host setups)."""
    webhook_secret: SecretStr | None = None
    """Signs webhooks of the default tenant (API keys off); tenants have their own secrets."""
    webhook_timeout_s: float = 10.0
    webhook_poll_interval_s: float = 2.0
    """How often workers look for webhooks to send."""
    webhook_max_attempts: int = 8
    """Deliveries are retried with exponential backoff, then given up and marked failed."""
    result_retention_days: int = 0
    """Results (and uploaded inputs) older than this are deleted by the cleanup; 0 keeps them."""
    cleanup_interval_s: float = 3600.0
    """How often workers and ``darkroom maintenance`` run the retention cleanup."""
    review: ReviewThresholds = Field(default_factory=ReviewThresholds)
    """When a finished job is flagged for a person (see :class:`ReviewThresholds`)."""
    report_link_expiry_s: int = Field(default=7 * 24 * 3600, ge=60)
    """How long a link from ``POST /v1/batches/{id}/report-link`` opens the batch's report."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line with the job id, for log pipelines."""
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.home / 'darkroom.db').as_posix()}"
        if self.storage_dir is None:
            self.storage_dir = self.home / "objects"
        if self.model_dir is None:
            self.model_dir = self.home / "models"
        return self

    @property
    def readable_buckets(self) -> set[str]:
        return {self.input_bucket, *self.allowed_input_buckets}

    @property
    def merges_passes(self) -> bool:
        """Whether a worker merges several jobs' tiles into shared passes
        (``device_batch_tiles`` above 1, with more than one job at once)."""
        return self.worker_concurrency > 1 and self.device_batch_tiles > 1

    def queue_for(self, family: str) -> str:
        return f"{self.queue_prefix}.{family}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
