"""A lock that one process of many holds for as long as it lives: PostgreSQL's session-level
advisory lock, on a connection of its own.

The holder keeps the connection open (autocommit, so it is never "idle in transaction"); when
its process dies, or the server or the network drops the connection, the lock goes with it and
the next process to ask gets it. SQLite is one machine's database: every process may act, so
the lock is always held there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading

from sqlalchemy import Connection, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from shared.db.engine import connect_args

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (advisory locks are keyed by a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class AdvisoryLock:
    def __init__(self, database_url: str, name: str) -> None:
        self.name = name
        self.key = lock_key(name)
        server = not make_url(database_url).drivername.startswith("sqlite")
        self._engine = (
            create_engine(database_url, poolclass=NullPool, connect_args=connect_args(database_url))
            if server
            else None
        )
        self._connection: Connection | None = None
        self._guard = threading.Lock()

    def held(self) -> bool:
        """Whether this process holds the lock now, taking it if it is free. Never blocks on
        another holder; a database that cannot be reached means not held (this time)."""
        if self._engine is None:
            return True
        with self._guard:
            if self._connection is not None:
                try:
                    self._connection.execute(text("SELECT 1"))
                    return True
                except SQLAlchemyError:
                    log.warning("lost the connection holding the %s lock", self.name)
                    self._close()
            try:
                connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            except SQLAlchemyError:
                return False
            try:
                taken = connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
                ).scalar()
            except SQLAlchemyError:
                taken = False
            if not taken:
                connection.close()
                return False
            self._connection = connection
            log.info("took the %s lock", self.name)
            return True

    def release(self) -> None:
        with self._guard:
            self._close()

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.close()  # the lock ends with the session
            self._connection = None
