"""The database boundary: an outage comes out as Darkroom's ``DatabaseUnavailable``, an answer
(a constraint the data broke) as SQLAlchemy's own error."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.db.engine import STATEMENT_TIMEOUT_MS, make_engine
from shared.errors import DatabaseUnavailable


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://postgres@127.0.0.1:1/darkroom?connect_timeout=2",
        "sqlite:////proc/self/darkroom.sqlite",  # a folder no file can be created in
    ],
    ids=["postgresql-refused", "sqlite-unopenable"],
)
def test_an_unreachable_database_is_database_unavailable(url: str) -> None:
    engine = make_engine(url)
    with pytest.raises(DatabaseUnavailable) as info, engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    assert info.value.retryable
    assert info.value.message.startswith("database error: ")


def test_a_broken_constraint_stays_an_integrity_error(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("CREATE TEMP TABLE t (id int PRIMARY KEY)"))
        connection.execute(text("INSERT INTO t VALUES (1), (1)"))


def test_a_server_that_drops_a_connection_is_reconnected_by_pre_ping(postgres_url: str) -> None:
    """A dead pooled connection is replaced at checkout, not reported as an outage."""
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with make_engine(postgres_url).connect() as killer:
        killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1


def test_every_statement_has_a_time_limit_on_postgresql(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        limit = connection.execute(
            text("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")
        ).scalar()
    assert limit == str(STATEMENT_TIMEOUT_MS)  # milliseconds
    engine.dispose()


def test_a_statement_past_its_limit_is_cancelled_as_an_outage(postgres_url: str) -> None:
    """A stuck statement is cancelled by the server and retried like an outage, not waited on
    for ever; the limit in the URL wins over the default."""
    separator = "&" if "?" in postgres_url else "?"
    engine = make_engine(f"{postgres_url}{separator}options=-c%20statement_timeout%3D200")
    with engine.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "200ms"
        with pytest.raises(DatabaseUnavailable):
            connection.execute(text("SELECT pg_sleep(5)"))
    engine.dispose()
