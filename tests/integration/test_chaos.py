"""Chaos: 300 tasks through two modules with two agents each; agents SIGKILLed three times and the broker
restarted once, with a fixed seed. Every task succeeds exactly once and the second module gets 300 tasks."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

import pytest
from cluster import Cluster

from scalebox_stream.local import kafka as local_kafka
from scalebox_stream.local import services

SEED = 20261125
TASKS = 300

STAGE = """#!/bin/sh
# sleep 50-350 ms, derived from the body, then hand the body on
ms=$(( ($(printf '%s' "$1" | cksum | cut -d' ' -f1) % 300) + 50 ))
sleep "$(printf '0.%03d' "$ms")"
if [ "$MODULE_NAME" = first ]; then echo "$1" > "$WORK_DIR/sink-tasks.txt"; fi
printf '%s' "$1" > "$WORK_DIR/custom-out.txt"
"""


def _restart_broker() -> None:
    local_kafka.stop()
    time.sleep(2)
    services.up()


@pytest.mark.skipif(bool(os.environ.get("SCALEBOX_KAFKA")), reason="restarts the local broker only")
def test_chaos_every_task_succeeds_exactly_once(tmp_path, kafka_bootstrap, pg_dsn):
    rng = random.Random(SEED)
    (tmp_path / "stage.sh").write_text(STAGE)
    (tmp_path / "stage.sh").chmod(0o755)
    app = f"chaos-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n  first:\n    command: ./stage.sh\n    sink_modules: [second]\n"
        "  second:\n    command: ./stage.sh\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        c.start_projector()
        agents = {m: [c.start_agent(m, 2), c.start_agent(m, 2)] for m in ("first", "second")}
        roots = c.send("first", [f"item-{i:04d}" for i in range(TASKS)])
        plan = sorted([(rng.uniform(3, 25), "kill") for _ in range(3)] + [(rng.uniform(8, 18), "broker")])
        log: list[str] = []

        def chaos() -> None:
            began = time.monotonic()
            for at, action in plan:
                time.sleep(max(0.0, at - (time.monotonic() - began)))
                if action == "kill":
                    module = rng.choice(["first", "second"])
                    victim = agents[module].pop(rng.randrange(len(agents[module])))
                    c.kill(victim)
                    agents[module].append(c.start_agent(module, 2))
                    log.append(f"{time.monotonic() - began:5.1f}s SIGKILL {victim.name}")
                else:
                    log.append(f"{time.monotonic() - began:5.1f}s broker restart")
                    _restart_broker()
                    log.append(f"{time.monotonic() - began:5.1f}s broker back")

        thread = threading.Thread(target=chaos)
        thread.start()
        thread.join()
        state = c.wait(roots, timeout_s=400)
        print("\n".join(log))
        counts = {m["module"]: (m["created"], m["succeeded"], m["failed"]) for m in state.modules}
        duplicates = c.query("SELECT task_id, count(*) FROM task_runs WHERE app = %s AND status = 'succeeded' "
                             "GROUP BY task_id HAVING count(*) > 1", app)
        lost = c.query("SELECT count(*) FROM task_runs WHERE app = %s AND status = 'lost'", app)[0][0]
        second_parents = c.query("SELECT count(DISTINCT parent_task_id), count(*) FROM tasks "
                                 "WHERE app = %s AND module = 'second'", app)[0]
        attempts = c.query("SELECT count(*) FROM task_runs WHERE app = %s", app)[0][0]
        print(f"chaos counts: {counts}; attempts {attempts}; lost attempts {lost}; duplicate successes "
              f"{len(duplicates)}; second-module tasks {second_parents[1]} from {second_parents[0]} parents")
        assert counts == {"first": (TASKS, TASKS, 0), "second": (TASKS, TASKS, 0)}
        assert duplicates == []
        assert second_parents == (TASKS, TASKS)
        assert c.query("SELECT count(*) FROM task_edges e JOIN tasks t ON t.task_id = e.parent_task_id "
                       "WHERE t.app = %s", app) == [(TASKS,)]
    finally:
        c.close()
