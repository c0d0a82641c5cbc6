"""A batch that fails inside the projector's pipeline (here: events it applied before, sent again) is applied
the careful way, and so is every later batch's work: no event is dead-lettered and the tables equal a clean
projection's.

psycopg prepares a statement on its fifth execution. When a pipelined batch fails, the server skips the
statements after the failing one, PREPAREs included, while psycopg may count them as prepared; every later
batch then failed with "prepared statement _pg3_N does not exist" and its events went to the dead letters.
"""

from __future__ import annotations

import uuid

import psycopg
from support import verify, workload

from scalebox_stream.projector.service import Projector, ProjectorSettings


def _project(bootstrap: str, dsn: str, topic: str, group: str, prepare_at_once: bool = False) -> Projector:
    projector = Projector(bootstrap, dsn, ProjectorSettings(batch_size=50), group=group, topic=topic)
    projector.start()
    if prepare_at_once:  # the statements' first executions are in the failing batches
        projector.conn.prepare_threshold = 0
    projector.run(until_caught_up=True, install_signals=False)
    return projector


def test_batches_after_a_failed_pipeline_are_applied_not_dead_lettered(kafka_bootstrap, pg_dsn):
    tag = uuid.uuid4().hex[:8]
    events = list(workload.generate(1_500, app=f"pipe-{tag}"))
    head, full = f"sbx.test.pipe.{tag}.head", f"sbx.test.pipe.{tag}.full"
    workload.produce(kafka_bootstrap, head, events[:300], partitions=1)
    workload.produce(kafka_bootstrap, full, events, partitions=1)
    clean, redelivered = f"pipe_{tag}_clean", f"pipe_{tag}_again"
    clean_dsn, again_dsn = verify.create_database(pg_dsn, clean), verify.create_database(pg_dsn, redelivered)
    try:
        _project(kafka_bootstrap, clean_dsn, full, f"sbx.test.{tag}.clean")
        _project(kafka_bootstrap, again_dsn, head, f"sbx.test.{tag}.head")
        # A second projector over the whole log: its first batches hold only events applied before.
        stats = _project(kafka_bootstrap, again_dsn, full, f"sbx.test.{tag}.full", prepare_at_once=True).stats
        assert stats.dead_letters == 0
        assert (stats.events, stats.duplicates) == (len(events), 300)
        with psycopg.connect(clean_dsn) as a, psycopg.connect(again_dsn) as b:
            expected, got = verify.table_digests(a), verify.table_digests(b)
        assert {t: d for t, d in got.items() if t != "projector_offsets"} == \
            {t: d for t, d in expected.items() if t != "projector_offsets"}
    finally:
        verify.drop_database(pg_dsn, clean)
        verify.drop_database(pg_dsn, redelivered)
