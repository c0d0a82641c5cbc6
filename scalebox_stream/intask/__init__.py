"""The in-task tools: POSIX sh programs (`scalebox`, `send-message`, `send-job-message`, `functions.sh`) that a
task's program calls, in any runtime (a plain process, a Debian image, a busybox image with no network).

They need no Python and no network: messages they add are lines the agent reads from the work directory after
the run (`sink-tasks.jsonl`), and requests that need an answer go to the agent through a FIFO channel
(`scalebox_stream.agent.tools`). See docs/in-task-tools.md.
"""

from __future__ import annotations

from pathlib import Path

BIN_DIR = Path(__file__).resolve().parent / "bin"
"""The tools on this host (on PATH for the process executor, mounted read-only into containers)."""
CONTAINER_BIN_DIR = "/usr/local/sbx/bin"
"""Where containers see BIN_DIR (first on their PATH)."""
CONTAINER_CHANNEL_DIR = "/usr/local/sbx/channel"
"""Where containers see their slot's request channel."""
CONTAINER_FUNCTIONS = "/usr/local/bin/functions.sh"
"""Where Scalebox scripts source the shell helpers from (`source /usr/local/bin/functions.sh`)."""
FUNCTIONS_FILE = BIN_DIR / "functions.sh"
CHANNEL_ENV = "SBX_CHANNEL"
"""The environment variable that names the channel directory as the program sees it."""
