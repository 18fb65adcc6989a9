"""The advisory lock that elects one worker: one holder at a time, handed on when it goes."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import text

from shared.db.engine import make_engine
from shared.db.locks import AdvisoryLock, lock_key


def test_one_holder_at_a_time_and_the_next_takes_over(postgres_url: str) -> None:
    name = f"test-{uuid.uuid4().hex}"
    first, second = AdvisoryLock(postgres_url, name), AdvisoryLock(postgres_url, name)
    try:
        assert first.held() and first.held()  # asking again keeps it
        assert not second.held()
        first.release()
        assert second.held() and not first.held()
    finally:
        first.release()
        second.release()


def test_a_holder_whose_connection_dies_loses_the_lock_to_the_next(postgres_url: str) -> None:
    """A holder that vanished (killed process, dropped connection) does not keep the lock."""
    name = f"test-{uuid.uuid4().hex}"
    holder, other = AdvisoryLock(postgres_url, name), AdvisoryLock(postgres_url, name)
    try:
        assert holder.held() and not other.held()
        engine = make_engine(postgres_url)
        with engine.begin() as connection:  # the server drops the holder's session
            killed = (
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' "
                        "AND objid = CAST(CAST(:key AS bigint) & 4294967295 AS oid) "
                        "AND classid = CAST((CAST(:key AS bigint) >> 32) & 4294967295 AS oid)"
                    ),
                    {"key": lock_key(name)},
                )
                .scalars()
                .all()
            )
        engine.dispose()
        assert killed == [True]
        assert other.held()
        assert not holder.held()  # it notices, and the lock is taken
    finally:
        holder.release()
        other.release()


def test_sqlite_is_one_machine_so_every_process_acts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert AdvisoryLock(url, "x").held() and AdvisoryLock(url, "x").held()


def test_different_names_are_different_locks(postgres_url: str) -> None:
    one, two = (
        AdvisoryLock(postgres_url, f"a-{uuid.uuid4()}"),
        AdvisoryLock(postgres_url, f"b-{uuid.uuid4()}"),
    )
    try:
        assert one.held() and two.held()
    finally:
        one.release()
        two.release()
