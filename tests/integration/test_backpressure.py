"""Backpressure: a fast producer and a slow consumer keep the slow module's backlog bounded."""

from __future__ import annotations

import threading
import time
import uuid

from cluster import Cluster
from scalebox_stream.kafka.backlog import BacklogMonitor

BOUND = 5
FAST_SLOTS = 2


def test_slow_module_backlog_stays_within_one_batch_of_its_bound(tmp_path, kafka_bootstrap, pg_dsn):
    app = f"backpressure-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n"
        "  fast:\n    command: [/bin/sh, -c, 'echo \"$1\" > \"$WORK_DIR/sink-tasks.txt\"', sh]\n"
        f"    sink_modules: [slow]\n    slots: {FAST_SLOTS}\n"
        f"  slow:\n    command: [/bin/sh, -c, 'sleep 0.3']\n    max_backlog: {BOUND}\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    monitor = BacklogMonitor(kafka_bootstrap)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(monitor._measure(app, "slow"))
            time.sleep(0.05)

    try:
        c.start_projector()
        c.start_agent("fast", FAST_SLOTS)
        c.start_agent("slow", 1)
        roots = c.send("fast", [f"t{i}" for i in range(40)])
        sampler = threading.Thread(target=sample)
        sampler.start()
        state = c.wait(roots, timeout_s=180)
        done.set()
        sampler.join()
        counts = {m["module"]: (m["succeeded"], m["failed"]) for m in state.modules}
        assert counts == {"fast": (40, 0), "slow": (40, 0)}, "nothing is dropped"
        print(f"slow backlog: max {max(samples)} over {len(samples)} samples (bound {BOUND})")
        assert max(samples) <= BOUND + FAST_SLOTS, samples
        assert max(samples) >= BOUND - 1, "the test never loaded the slow module"
    finally:
        done.set()
        monitor.close()
        c.close()
