"""The projector benchmark's smoke mode runs end to end and projects the same rows at every batch size
(a correctness check, not a speed assertion)."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline import REPO


def test_bench_smoke_gives_identical_projections(kafka_bootstrap, pg_dsn):
    proc = subprocess.run([sys.executable, str(REPO / "tests/bench/bench_projector.py"), "--smoke", "--json",
                           "--kafka", kafka_bootstrap, "--pg", pg_dsn],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    assert "projections identical across batch sizes" in proc.stdout
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))
    counts = list(result["counts"].values())
    assert len(counts) == 4 and all(c == counts[0] for c in counts), counts  # batch 1, 100, 1000; 1000 x 2
    assert set(result["rates"]) == {"1x1", "100x1", "1000x1", "1000x2"}
    assert counts[0]["tasks"] > 500 and counts[0]["applied_events"] >= 5000
    assert all(rate > 0 for rate in result["rates"].values())
