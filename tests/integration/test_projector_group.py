"""Two projectors of one group share the partitions of one database: rows that both insert at once
(a child's placeholder from its parent's partition, its TaskCreated from its own) are merged, not lost
nor dead-lettered, and the result equals a single projector's."""

from __future__ import annotations

import threading
import uuid

import psycopg
from support import verify, workload

from scalebox_stream.projector.migrate import migrate
from scalebox_stream.projector.service import Projector, ProjectorSettings


def _project(bootstrap: str, dsn: str, topic: str, group: str, batch_size: int) -> dict:
    projector = Projector(bootstrap, dsn, ProjectorSettings(batch_size=batch_size), group=group, topic=topic)
    return {"stats": projector.run(until_caught_up=True, install_signals=False)}


def test_two_projectors_of_one_group_build_the_same_tables_as_one(kafka_bootstrap, pg_dsn):
    tag = uuid.uuid4().hex[:8]
    topic = f"sbx.test.group.{tag}"
    workload.produce(kafka_bootstrap, topic, workload.generate(20_000, app=f"group-{tag}", children=8))
    shared, single = f"group_{tag}_shared", f"group_{tag}_single"
    shared_dsn, single_dsn = verify.create_database(pg_dsn, shared), verify.create_database(pg_dsn, single)
    try:
        with psycopg.connect(shared_dsn, autocommit=True) as conn:  # migrate once, before both start
            migrate(conn)
        results: list[dict] = [{}, {}]
        threads = [threading.Thread(target=lambda i=i: results[i].update(
            _project(kafka_bootstrap, shared_dsn, topic, f"sbx.test.{tag}", 20)), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert all("stats" in r for r in results), "a projector did not finish"
        assert sum(r["stats"].dead_letters for r in results) == 0
        _project(kafka_bootstrap, single_dsn, topic, f"sbx.test.{tag}.single", 1000)
        with psycopg.connect(shared_dsn) as a, psycopg.connect(single_dsn) as b:
            assert verify.table_digests(a) == verify.table_digests(b)
    finally:
        verify.drop_database(pg_dsn, shared)
        verify.drop_database(pg_dsn, single)
