"""A task program of bench_state.py: calls the in-task `scalebox semaphore increment-n NAME 1` N times in a row
(N: the task's body) and writes each call's round trip in ms to custom-out.txt, as the task saw it.

A round trip is all a task pays for a call: the tool's start (a shell script), its request through the slot's
channel, the agent's state client, the owner and back. The tool is found on the task's PATH as any task finds it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

NAME = "intask"


def main() -> int:
    calls = int(sys.argv[1])
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        subprocess.run(["scalebox", "semaphore", "increment-n", NAME, "1"], check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
    Path(os.environ["WORK_DIR"], "custom-out.txt").write_text(" ".join(f"{t:.3f}" for t in times))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
