"""Engines and sessions, built by factories so tests and the embedded mode pick their own URL.

This is where the database's errors become Darkroom's: every engine made here turns an
unreachable or failing server (SQLAlchemy's ``OperationalError`` and ``InterfaceError``, on
connect or mid-statement) into :class:`shared.errors.DatabaseUnavailable`, so the worker
retries it and the API answers 503, and no other module catches SQLAlchemy's outage errors.
Integrity errors stay SQLAlchemy's: they are answers, not outages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import DatabaseUnavailable


def make_engine(url: str) -> Engine:
    engine = _sqlite_engine(url) if url.startswith("sqlite") else _server_engine(url)
    event.listen(engine, "handle_error", _translate)
    return engine


def _translate(context: ExceptionContext) -> None:
    """Raise the outage as ``DatabaseUnavailable`` (with the driver's own message). A failed
    pre-ping is left alone: the pool reconnects on its own, and only if that fails too does
    the caller see an error."""
    error = context.sqlalchemy_exception
    if context.is_pre_ping or not isinstance(
        error, sa_exc.OperationalError | sa_exc.InterfaceError
    ):
        return
    raise DatabaseUnavailable(f"database error: {error.orig}") from error


def _sqlite_engine(url: str) -> Engine:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # WAL lets the API read while an in-process worker writes.
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _server_engine(url: str) -> Engine:
    return create_engine(
        url,
        # A connection the server dropped (restart, failover, idle cut) is noticed and replaced
        # at checkout instead of failing the next statement.
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args=connect_args(url),
    )


STATEMENT_TIMEOUT_MS = 60_000
"""The longest any statement of the API or a worker may run on PostgreSQL before the server
cancels it. Darkroom's statements take milliseconds (a 50,000-job batch insert, seconds); one
that runs for a minute is stuck behind a lock or a sick server, and the worker is better off
retrying it (a cancelled statement is ``DatabaseUnavailable``, retried with backoff) than
waiting forever. Migrations use their own connection and no limit."""


def connect_args(url: str) -> dict[str, int | str]:
    """libpq waits forever by default for a server that does not answer a connect, never
    notices a peer that vanished mid-query, and lets a statement run for ever: bound the
    first, probe for and drop the second (keepalives while idle, ``tcp_user_timeout`` while
    data is unacknowledged), cancel the third (:data:`STATEMENT_TIMEOUT_MS`). Values given in
    the URL's query string win (``?connect_timeout=5``, ``?options=-c statement_timeout=5000``)."""
    if not make_url(url).drivername.startswith("postgresql"):
        return {}
    defaults: dict[str, int | str] = {
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
        "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    }
    given = make_url(url).query
    return {key: value for key, value in defaults.items() if key not in given}


@lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(make_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
