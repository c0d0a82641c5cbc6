"""The projector survives a PostgreSQL crash and restart: it waits, reconnects, rewinds, loses nothing and
applies nothing twice. Runs against a throwaway PostgreSQL (same bundled binaries, own data dir and port),
so the shared server is never disturbed."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from support import verify, workload

from scalebox_stream.local import postgres
from scalebox_stream.projector.service import Projector, ProjectorSettings


class ThrowawayPostgres:
    """A PostgreSQL server in a temporary directory, started and stopped with pg_ctl."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sbx-pg-", dir="/tmp"))
        self.pgdata, self.log = self.dir / "data", self.dir / "server.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        user = postgres._as_user()
        self.pgdata.mkdir(mode=0o700)
        self.log.touch()
        if user:
            for path in (self.dir, self.pgdata, self.log):
                os.chown(path, user["user"], user["group"])
        code, out = postgres._run(["initdb", "--auth=trust", "--encoding=UTF8", "--no-instructions", "-U",
                                   "postgres", "-D", str(self.pgdata)])
        assert code == 0, out
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        code, out = postgres._run(["pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.log),
                                   "-o", opts], timeout=70)
        assert code == 0, out + self.log.read_text()[-2000:]

    def stop(self, mode: str = "fast") -> None:
        postgres._run(["pg_ctl", "stop", "-m", mode, "-w", "-t", "60", "-D", str(self.pgdata)], timeout=70)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def throwaway_pg(pg_dsn: str) -> Iterator[ThrowawayPostgres]:
    """A private PostgreSQL (`pg_dsn` is requested so the bundled binaries are known to work)."""
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_projector_survives_a_postgres_restart(kafka_bootstrap, pg_dsn, throwaway_pg):
    tag = uuid.uuid4().hex[:8]
    topic = f"sbx.test.pgrestart.{tag}"
    events = list(workload.generate(20_000, app=f"pgrestart-{tag}"))
    workload.produce(kafka_bootstrap, topic, events)

    projector = Projector(kafka_bootstrap, throwaway_pg.dsn, ProjectorSettings(batch_size=100), group=f"sbx.test.{tag}",
                          topic=topic)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        stats=projector.run(until_caught_up=True, install_signals=False)), daemon=True)
    thread.start()
    _wait_for(lambda: projector.stats.batches >= 20, 120, "the first batches")
    down_at = time.monotonic()
    throwaway_pg.stop("immediate")  # a crash: the batch in flight is lost with the server
    events_when_down = projector.stats.events
    time.sleep(3)
    throwaway_pg.start()
    up_at = time.monotonic()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the projector did not catch up after the restart"
    stats = result["stats"]
    print(f"down {up_at - down_at:.1f}s; reconnects {stats.db_reconnects}; {events_when_down} events read before "
          f"the crash, {stats.events} in all (re-read after rewinding), {stats.duplicates} duplicates skipped")

    assert stats.db_reconnects >= 1
    assert events_when_down < len(events), "the crash came too late to test anything"
    with psycopg.connect(throwaway_pg.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM applied_events").fetchone()[0] == len(events)
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
        survived = verify.table_digests(conn)

    reference_db = f"pgrestart_ref_{tag}"
    reference = verify.create_database(pg_dsn, reference_db)
    try:
        Projector(kafka_bootstrap, reference, ProjectorSettings(batch_size=1000), group=f"sbx.test.{tag}.ref",
                  topic=topic).run(until_caught_up=True, install_signals=False)
        with psycopg.connect(reference) as conn:
            expected = verify.table_digests(conn)
    finally:
        verify.drop_database(pg_dsn, reference_db)
    assert survived == expected, "the projection after the restart differs from an undisturbed one"
