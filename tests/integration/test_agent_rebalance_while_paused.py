"""Partitions taken away while an agent's fetching was paused (its buffer full) and given back later must
be fetched again: librdkafka keeps a partition's pause flag across a revoke and a re-assignment."""

from __future__ import annotations

import time

from cluster import Cluster

TASKS = 600


def test_partitions_given_back_after_a_paused_spell_are_fetched(tmp_path, kafka_bootstrap, pg_dsn):
    c = Cluster.one_module(tmp_path, kafka_bootstrap, pg_dsn, "repause", "slow", "[/bin/sh, -c, 'sleep 0.05']")
    try:
        c.start_projector()
        first = c.start_agent("slow", 1)
        c.wait_for_members("slow", 1)
        roots = c.send("slow", [str(i) for i in range(TASKS)])
        time.sleep(2)  # the first agent fills its buffer (4 x 64 tasks) and pauses fetching
        second = c.start_agent("slow", 1)
        c.wait_for_members("slow", 2)  # partitions taken from the paused agent
        time.sleep(6)  # it drains below its buffer's target and resumes what it still holds
        assert c.terminate(second) == 0  # the partitions go back to the first agent
        (module,) = c.wait(roots, timeout_s=150).modules
        assert (module["succeeded"], module["failed"]) == (TASKS, 0)
        assert first.exited() is None
    finally:
        c.close()
