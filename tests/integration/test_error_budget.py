"""A module whose error budget is spent stops admitting tasks until resumed from the CLI."""

from __future__ import annotations

import json
import time
import uuid

from cluster import Cluster
from pipeline import scalebox


def test_error_budget_suspends_the_module_until_resumed(tmp_path, kafka_bootstrap, pg_dsn):
    flag = tmp_path / "failing"
    flag.touch()
    app = f"budget-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n  fragile:\n    command: [/bin/sh, -c, 'test ! -e {flag}']\n"
        "    error_budget: {max_failures: 3, window: 1m}\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    try:
        c.start_projector()
        c.start_agent("fragile", 1)
        roots = c.send("fragile", [f"t{i}" for i in range(6)])
        c.wait_for("SELECT 1 FROM module_states WHERE app = %s AND module = 'fragile' AND state = 'suspended'",
                   app, timeout_s=60)
        time.sleep(3)
        state = c.state(roots)
        (module,) = state.modules
        assert (module["failed"], module["succeeded"]) == (3, 0), "tasks ran while the module was suspended"
        status = scalebox(["status", "--app", app, "--json"], kafka_bootstrap, pg_dsn)
        (row,) = json.loads(status.stdout)
        assert row["state"] == "suspended" and "error budget" in row["state_reason"]

        flag.unlink()
        assert scalebox(["module", "resume", "--app", app, "--module", "fragile"], kafka_bootstrap, pg_dsn).code == 0
        (module,) = c.wait(roots, timeout_s=60).modules
        assert (module["failed"], module["succeeded"]) == (3, 3)
        c.wait_for("SELECT 1 FROM module_states WHERE app = %s AND module = 'fragile' AND state = 'resumed'", app)
    finally:
        c.close()
