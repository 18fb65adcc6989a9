"""The one place configuration is read from.

Every process builds a :class:`Settings` from ``DARKROOM_*`` environment variables (or a ``.env``
file). The defaults describe the embedded mode: SQLite, a local object folder and the worker
running in-process, so a fresh checkout works with no server installed. docker-compose and
production override them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(".darkroom")


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

    model_dir: Path | None = None
    """Local folder of checkpoints, named as the catalogue says. Empty: ``home/models``."""
    model_bucket: str | None = None
    """Bucket of the model store: checkpoints under ``model_prefix`` are fetched into model_dir."""
    model_prefix: str = "models/"
    preload_models: list[str] = Field(default_factory=list)
    """Models a worker loads at start instead of on its first job."""
    model_cache_mb: int = 8192
    """Weights kept loaded per worker; least recently used models are dropped beyond this."""
    tile_batch_size: int = 4
    """Tiles per forward pass."""
    device: str = "auto"
    """``auto`` picks CUDA when available, else CPU."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000
    """Images above this many pixels are refused before decoding (decompression bombs)."""
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
    """How often each worker looks for such jobs, and for queued jobs the broker lost."""
    reconcile_after_s: float = 60.0
    """A job queued this long whose message is not in Redis is sent again."""
    retry_backoff_s: float = 2.0
    retry_backoff_max_s: float = 60.0

    shared_dir: Path = Path("../shared")
    """Evaluation images and reference data (``darkroom eval``, tests); outside the repository."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000

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

    def queue_for(self, family: str) -> str:
        return f"{self.queue_prefix}.{family}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
