"""A pipeline across two Kafka clusters over MirrorMaker 2 (`scalebox mirror`).

The app's home is the test's Kafka; a second single-node Kafka (`scalebox local up` in a home of its own) runs the
middle module. MirrorMaker 2 copies that module's tasks out and its events and next tasks home, where one
projector records every attempt of the three modules.
"""

from __future__ import annotations

import uuid

import pytest
from cluster import Cluster
from confluent_kafka.admin import AdminClient
from pipeline import free_port, scalebox
from support.homes import share_kafka_jars

from scalebox_stream.kafka.config import admin_config

EMIT = "[/bin/sh, -c, 'echo \"$0\" > \"$WORK_DIR/sink-tasks.txt\"']"


@pytest.fixture
def far_cluster(tmp_path, kafka_bootstrap, pg_dsn, monkeypatch):
    """A second single-node Kafka (and its unused PostgreSQL) in a home of its own; its bootstrap. It is secured
    like every local pair: its client properties, written for its broker only, are named for this test's
    processes (`SCALEBOX_KAFKA_CONFIG`), which keep their own home's for the home cluster."""
    home = share_kafka_jars(tmp_path / "far-home")
    ports = ["--kafka-port", str(free_port()), "--controller-port", str(free_port()), "--pg-port", str(free_port()),
             "--internal-port", str(free_port())]
    up = scalebox(["local", "up", *ports], kafka_bootstrap, pg_dsn, home=home)
    assert up.code == 0, up.stderr
    monkeypatch.setenv("SCALEBOX_KAFKA_CONFIG", str(home / "kafka-client.properties"))
    yield up.stdout.splitlines()[0].split()[-1]
    scalebox(["local", "down"], kafka_bootstrap, pg_dsn, home=home)


def test_a_pipeline_runs_across_two_clusters_and_is_projected_at_home(tmp_path, kafka_bootstrap, pg_dsn,
                                                                      far_cluster):
    run = uuid.uuid4().hex[:8]
    app, far = f"cross-{run}", f"far-{run}"  # MirrorMaker 2 keeps a flow's state on its target under the source's
    # name: a name of its own keeps this run from the state earlier runs left on the shared home cluster
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\ncluster: home\nmodules:\n"
        f"  scatter: {{command: {EMIT}, sink_modules: [calc]}}\n"
        f"  calc: {{command: {EMIT}, sink_modules: [gather], cluster: {far}}}\n"
        f"  gather: {{command: [/bin/true]}}\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        c.children.start("mirror", ["mirror", str(tmp_path / "app.yaml"), "--cluster", f"{far}={far_cluster}",
                                    "--replication-factor", "1"])
        c.start_projector()
        c.start_agent("scatter", 2)
        c.start_agent("gather", 2)
        c.start_agent("calc", 2, "--kafka", far_cluster)
        # A parent's TaskFinished names its children, so the run is not finished before they are known at home,
        # whichever of their events MirrorMaker 2 copies first.
        state = c.wait(c.send("scatter", [f"n{i}" for i in range(6)]), timeout_s=240)
        assert {m["module"]: (m["succeeded"], m["failed"]) for m in state.modules} == {
            "scatter": (6, 0), "calc": (6, 0), "gather": (6, 0)}

        runs = c.query("SELECT module, cluster, count(*), max(attempt) FROM task_runs WHERE app = %s "
                       "GROUP BY module, cluster ORDER BY module", app)
        assert runs == [("calc", far, 6, 1), ("gather", "home", 6, 1), ("scatter", "home", 6, 1)], \
            "every task ran once, where the app file placed its module"
        lineage = c.query("SELECT count(*) FROM tasks g JOIN tasks k ON g.parent_task_id = k.task_id "
                          "JOIN tasks s ON k.parent_task_id = s.task_id WHERE g.app = %s AND g.module = 'gather' "
                          "AND k.module = 'calc' AND s.module = 'scatter' AND g.body = s.body", app)
        assert lineage == [(6,)], "each gather task descends from its calc and scatter tasks, body passed on"
    finally:
        c.close()
        admin = AdminClient(admin_config(kafka_bootstrap))
        internal = [t for t in admin.list_topics(timeout=30).topics if t.endswith(f".{far}.internal")]
        for future in (admin.delete_topics(internal, operation_timeout=30).values() if internal else ()):
            future.result()
        assert f"mm2-configs.{far}.internal" in internal, f"MirrorMaker 2's state on home: {internal}"
