"""`scalebox projector --metrics-port` serves Prometheus metrics with bounded labels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from pipeline import REPO, free_port


def test_projector_serves_metrics(kafka_bootstrap, pg_dsn):
    port = free_port()
    env = {**os.environ, "SCALEBOX_KAFKA": kafka_bootstrap, "SCALEBOX_PG": pg_dsn}
    argv = [sys.executable, "-m", "scalebox_stream.cli.main", "projector", "--metrics-port", str(port)]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        body = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "scalebox_projector_batches_total" not in body:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert "scalebox_projector_batches_total" in body
        assert "scalebox_projector_dead_letters" in body
        assert "task_id" not in body, "no per-task labels"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
