"""docker-compose.yml's settings: every DARKROOM_* variable a real setting that parses, and the
URLs of the database, broker and object store pointing at the services that serve them.

The compose file names settings, CLI commands, queues and buckets that live in Python; these tests
parse it (``tests.deploy.compose``) and hold each of those names to the code, so a renamed setting,
a removed CLI option or a bucket missing from ``minio-init`` fails here instead of in a
half-started stack.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import make_url

from shared.catalogue import CATALOGUE
from shared.config import Settings
from tests.deploy.compose import (
    DARKROOM_SERVICES,
    PREFIX,
    SERVICES,
    SHARED_ENV,
    darkroom_env,
    environment_of,
    published_ports,
    settings_from_environ,
)


def test_darkroom_services_get_the_shared_environment() -> None:
    assert SHARED_ENV, "x-darkroom-env is empty"
    for name in DARKROOM_SERVICES:
        env = environment_of(name)
        missing = {k: v for k, v in SHARED_ENV.items() if env.get(k) != v}
        assert not missing, f"{name} does not carry the shared settings: {missing}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_darkroom_variables_are_settings_fields(name: str) -> None:
    unknown = [
        key
        for key in darkroom_env(name)
        if key[len(PREFIX) :].split("__")[0].lower() not in Settings.model_fields
    ]
    # Settings ignores unknown variables (extra="ignore"), so a typo would pass silently.
    assert not unknown, f"{name}: not fields of shared.config.Settings: {unknown}"


@pytest.mark.parametrize("name", DARKROOM_SERVICES)
def test_darkroom_environment_parses(name: str, container_env) -> None:  # type: ignore[no-untyped-def]
    env = container_env(name)
    # Raises on a bad value (a wrong Literal, a non-int, bad JSON).
    settings = settings_from_environ()
    # Containers share state only through the servers: no SQLite, local folder or inline runs.
    assert settings.execution == "celery"
    assert settings.storage_backend == "s3"
    assert not settings.database_url.startswith("sqlite")
    for key, value in env.items():
        if not key.startswith(PREFIX) or "__" in key:
            continue
        parsed = getattr(settings, key[len(PREFIX) :].lower())
        if hasattr(parsed, "get_secret_value"):
            parsed = parsed.get_secret_value()
        if isinstance(parsed, list):
            continue
        assert str(parsed) == value, f"{name}: {key}={value!r} was read as {parsed!r}"
    unknown_models = set(settings.preload_models) - set(CATALOGUE)
    assert not unknown_models, f"{name} preloads models not in the catalogue: {unknown_models}"


def test_database_url_matches_postgres_service() -> None:
    url = make_url(SHARED_ENV["DARKROOM_DATABASE_URL"])
    pg = environment_of("postgres")
    assert url.get_backend_name() == "postgresql"
    assert url.host in SERVICES and SERVICES[url.host]["image"].startswith("postgres")
    assert (url.port or 5432) == 5432
    assert url.username == pg["POSTGRES_USER"]
    assert url.password == pg["POSTGRES_PASSWORD"]
    assert url.database == pg["POSTGRES_DB"]


def test_broker_url_points_at_redis_service() -> None:
    broker = urlsplit(SHARED_ENV["DARKROOM_BROKER_URL"])
    assert broker.scheme == "redis"
    assert broker.hostname in SERVICES
    assert SERVICES[broker.hostname]["image"].startswith("redis")
    assert (broker.port or 6379) == 6379


def test_s3_settings_match_minio() -> None:
    endpoint = urlsplit(SHARED_ENV["DARKROOM_S3_ENDPOINT_URL"])
    assert endpoint.hostname == "minio" and endpoint.port == 9000
    minio = environment_of("minio")
    assert SHARED_ENV["DARKROOM_S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert SHARED_ENV["DARKROOM_S3_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    # MinIO refuses to start with a root password under 8 characters.
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8


def test_public_s3_endpoint_is_published_by_minio() -> None:
    """Presigned URLs are signed for this host (SigV4 signs Host): clients must reach it."""
    public = urlsplit(SHARED_ENV["DARKROOM_S3_PUBLIC_ENDPOINT_URL"])
    internal = urlsplit(SHARED_ENV["DARKROOM_S3_ENDPOINT_URL"])
    assert public.hostname not in SERVICES, "the public endpoint must not be an in-network name"
    assert published_ports("minio").get(internal.port or 80) == (public.port or 80)
