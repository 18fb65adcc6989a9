"""A TCP fault proxy: put it between a real client and a real service, then break the link.

Darkroom's workers must ride out a database that drops off the network, an object store that
answers 503 or stops answering, a connection cut in the middle of an upload. Mocks of boto3 or
psycopg2 would only test our guess of how those libraries fail; this forwarder makes the real
libraries see the real socket errors. Each test points one worker's URL at ``proxy.port``
instead of the service's own port and switches :attr:`FaultProxy.mode`:

``pass``       forward both ways (the default)
``refuse``     reset every connection, open ones included, and each new one at once (the service
               is down or unreachable: psycopg2 and botocore see ``connection reset``)
``stall``      accept, but move no bytes either way, on open connections too (a hung server or
               a black-holed network: only the clients' timeouts end the wait)
``http_503``   answer every new connection with an S3-style ``503 ServiceUnavailable`` and close
``truncate``   forward at most ``truncate_after`` bytes of each request to the service, then reset
               both sides (a connection cut mid-upload)

Switching to any mode but ``pass`` resets the connections that are open, so pooled connections
see the fault at their next use, as after a real restart. Counters say how often clients tried.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs
from shared.catalogue import ModelStore
from shared.db.engine import session_factory
from shared.db.tables import FINISHED, Job, JobStatus
from shared.queue import make_dispatcher
from shared.storage import make_storage
from tests.conftest import settings_from_env

Mode = Literal["pass", "refuse", "stall", "http_503", "truncate"]

_HTTP_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/xml\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 118\r\n\r\n"
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>ServiceUnavailable</Code><Message>injected fault</Message></Error>"
)
assert len(_HTTP_503.split(b"\r\n\r\n", 1)[1]) == 118


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a crashed peer or a firewall would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; one thread per connection, daemon threads."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.truncate_after = 4096
        self.connections = 0
        """Connections accepted so far (each client retry opens at least one)."""
        self.faulted = 0
        """Connections (or requests) the proxy broke on purpose."""
        self._mode: Mode = "pass"
        self._generation = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True).start()

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        with self._lock:
            self._mode = mode
            if mode != "pass":
                self._generation += 1  # open connections notice and break

    @contextlib.contextmanager
    def fault(self, mode: Mode) -> Iterator[FaultProxy]:
        """The link is broken inside the block and healthy again after it."""
        self.mode = mode
        try:
            yield self
        finally:
            self.mode = "pass"

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _count_fault(self) -> None:
        with self._lock:
            self.faulted += 1

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        mode, generation = self._mode, self._generation
        if mode == "refuse":
            self._count_fault()
            _reset(client)
            return
        if mode == "stall":
            self._count_fault()
            self._hold(client)
            return
        if mode == "http_503":
            self._count_fault()
            self._answer_503(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        self._pump(client, upstream, generation, truncate=mode == "truncate")

    def _hold(self, client: socket.socket) -> None:
        """Keep the connection open and silent until the client gives up or the fault ends."""
        while self._mode == "stall" and not self._closed.is_set():
            readable, _, _ = select.select([client], [], [], 0.2)
            if readable:
                try:
                    if not client.recv(65536):  # the client closed: its timeout fired
                        break
                except OSError:
                    break
        _reset(client)

    def _answer_503(self, client: socket.socket) -> None:
        client.settimeout(2)
        with contextlib.suppress(OSError):
            client.recv(65536)  # the request line and headers, at least
            client.sendall(_HTTP_503)
            client.shutdown(socket.SHUT_WR)
            # Drain what the client still sends (a request body) so the close is clean.
            while client.recv(65536):
                pass
        with contextlib.suppress(OSError):
            client.close()

    def _pump(
        self, client: socket.socket, upstream: socket.socket, generation: int, truncate: bool
    ) -> None:
        sent_up = 0
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                if self._generation != generation:
                    if self._mode == "stall":
                        # A hang on an open connection: stop moving bytes, keep both open.
                        select.select([], [], [], 0.2)
                        continue
                    self._count_fault()
                    break
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if truncate and sock is client:
                        room = self.truncate_after - sent_up
                        if len(data) > room:
                            if room > 0:
                                upstream.sendall(data[:room])
                            self._count_fault()
                            return
                        sent_up += len(data)
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            _reset(client)
            _reset(upstream)


# ----------------------------------------------------------------------------- counting outcomes


@dataclass(frozen=True)
class Tally:
    """One row of the fault table: what was submitted and how each job ended."""

    fault: str
    submitted: int
    succeeded: int
    failed: int
    duplicates: int
    """Extra runs that finished a job a second time, or extra result objects for one job."""
    lost: int
    """Jobs not finished (still queued or running) when the test stopped waiting: must be 0."""
    without_object: int
    """Jobs marked succeeded whose recorded result object does not exist: must be 0."""
    failures: dict[str, int] = field(default_factory=dict)
    """Failed jobs per error code."""

    def row(self) -> str:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(self.failures.items())) or "-"
        return (
            f"| {self.fault} | {self.submitted} | {self.succeeded} | {self.failed} ({codes}) "
            f"| {self.duplicates} | {self.lost} |"
        )


def submit_photos(
    env: dict[str, str], s3: Any, keys_and_images: list[tuple[str, bytes]]
) -> list[uuid.UUID]:
    """Upload each photo and submit it as a job (model ``mirnet-lol``), as the API would."""
    settings = settings_from_env(env)
    dispatcher = make_dispatcher(settings)
    models = ModelStore(settings, make_storage(settings))
    ids = []
    with session_factory(settings.database_url)() as session:
        for key, data in keys_and_images:
            s3.put_object(Bucket=settings.input_bucket, Key=key, Body=data)
            job, _ = jobs.submit_job(
                session, settings, dispatcher, models, model="mirnet-lol", input_key=key
            )
            ids.append(job.id)
    return ids


def finished(session_maker: sessionmaker[Session], job_ids: list[uuid.UUID]) -> int:
    with session_maker() as session:
        return (
            session.scalar(
                sql_select(func.count()).where(Job.id.in_(job_ids), Job.status.in_(list(FINISHED)))
            )
            or 0
        )


def tally(
    fault: str,
    session_maker: sessionmaker[Session],
    s3: Any,
    bucket: str,
    job_ids: list[uuid.UUID],
    logs: list[Path],
) -> Tally:
    """Count outcomes from the database, the output bucket and the workers' logs.

    A job restored twice shows up as two "job <id> succeeded" lines (one per worker run that
    reached the end) or as two objects under its result prefix, whatever the database says.
    """
    with session_maker() as session:
        rows = session.execute(
            sql_select(Job.id, Job.status, Job.error_code, Job.output_key).where(
                Job.id.in_(job_ids)
            )
        ).all()
    objects: Counter[str] = Counter()
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            keys.add(obj["Key"])
            if match := re.search(r"results/([0-9a-f-]{36})/", obj["Key"]):
                objects[match.group(1)] += 1
    text = "\n".join(log.read_text(errors="replace") for log in logs if log.exists())
    runs = Counter(re.findall(r"job ([0-9a-f-]{36}) succeeded", text))
    succeeded = failed = duplicates = without_object = 0
    failures: Counter[str] = Counter()
    for job_id, status, error_code, key in rows:
        duplicates += max(runs[str(job_id)] - 1, 0) + max(objects[str(job_id)] - 1, 0)
        if status == JobStatus.succeeded:
            succeeded += 1
            without_object += key not in keys
        elif status == JobStatus.failed:
            failed += 1
            failures[error_code or "?"] += 1
    lost = (
        len(job_ids)
        - succeeded
        - failed
        - sum(1 for _, status, _, _ in rows if status == JobStatus.cancelled)
    )
    result = Tally(
        fault, len(job_ids), succeeded, failed, duplicates, lost, without_object, dict(failures)
    )
    print(f"\nFAULT TABLE ROW {result.row()}")
    return result
