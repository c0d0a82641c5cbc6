"""Every limit on what users give scalebox-stream: app files, their numbers, task bodies and headers.

One module, so that the validator, the CLI and the agent check the same numbers. Each limit is far
above what a real app needs and far below what would hang, kill or overflow a component.

| constant | limit | why |
| --- | --- | --- |
| `MAX_APP_FILE_BYTES` | 1 MiB | an app file is read whole and parsed in memory |
| `MAX_ENV_FILE_BYTES` | 1 MiB | env files (`scalebox.env`, `--env-file`) likewise |
| `MAX_YAML_DEPTH` | 64 | deeper nesting would exhaust the parser's recursion |
| `MAX_YAML_NODES` | 100,000 | values after expanding aliases (a "billion laughs" file stops here) |
| `MAX_INT_DIGITS` | 100 | digits of an integer in an app file (Python refuses to convert much longer ones) |
| `MAX_START_TASK_FILE_BYTES` | 16 MiB | a `start_task: FILE:` file |
| `MAX_START_TASKS` | 100,000 | start tasks of one module |
| `MAX_MODULES` | 1,000 | modules of one app |
| `MAX_NAME_CHARS` | 64 | an app or module name (a host topic `sbx.tasks.<app>.<module>.host.<host>` stays < 249) |
| `MAX_SLOTS` | 1,024 | `slots`: parallel tasks per agent |
| `MAX_DURATION_S` | 30 days | any duration: timeouts, deadlines, backoff, windows, host waits |
| `MAX_ATTEMPTS` | 1,000 | `retry.max_attempts` |
| `MAX_RETRIES` | 1,000 | retries of one rule (`retry_rules` counts, `retry.rules[].retries`) |
| `MAX_BACKOFF_FACTOR` | 100 | `retry.backoff.factor` |
| `MAX_OUTPUT_TEXT_SIZE` | 256 KiB | `output_text_size`: a report holds three such texts and must fit one Kafka record |
| `MAX_ERROR_BUDGET_FAILURES` | 1,000,000 | `error_budget.max_failures` |
| `MAX_TASKS_PER_HOST` | 65,536 | `max_tasks_per_host` |
| `MAX_BACKLOG` | 100,000,000 | `max_backlog` |
| `MAX_GB` | 1,000,000 | `dir_quota_gb`, `free_space_gb` (one petabyte) |
| `MAX_BODY_BYTES` | 64 KiB | a task body (UTF-8), from the CLI, a start task or a sink line |
| `MAX_HEADERS_BYTES` | 16 KiB | a task's headers, as compact JSON |
| `MAX_HEADER_KEY_CHARS` | 128 | one header key (letters, digits, `_`, `.`, `-`) |
| `MAX_SLOT_ENTRIES` | 1,024 | entries of a `slots:` host list |
| `MAX_HOST_PATTERN_CHARS` | 253 | a host name or pattern in a `slots:` entry (the longest DNS name) |
| `MAX_SLOT_EXPR_CHARS` | 100 | a `{~expr~}` slot expression in a launch template |
| `MAX_ENV_CASCADE` | 16 | env files read for one `-e NAME.env` (`a_b_c.env` reads `a.env`, `a_b.env`, then itself) |
| `MAX_PIDS` | 1,000,000 | `resources.pids`: processes in one container (the kernel's own limit is ~4 million) |
| `MAX_CPUS` | 1,024 | `resources.cpus` |
| `MIN_MEMORY_BYTES` / `MAX_MEMORY_BYTES` | 6 MiB / 64 TiB | `resources.memory` (Docker refuses less than 6 MiB) |
| `MAX_CAPS` | 64 | `cap_add` entries (Linux has ~41 capabilities) |
| `MAX_SECRETS` | 64 | `secrets` of one module |
| `MAX_SECRET_BYTES` | 64 KiB | one secret's value (read from its file or variable by the agent) |
"""

from __future__ import annotations

import math
from typing import Any

from scalebox_stream.policy.limits import (  # noqa: F401  (the task-content limits belong to policy)
    HEADER_KEY_RE,
    MAX_BODY_BYTES,
    MAX_HEADER_KEY_CHARS,
    MAX_HEADERS_BYTES,
    check_body,
    check_header_key,
    check_headers,
)

KIB = 1024
MIB = 1024 * KIB

MAX_APP_FILE_BYTES = 1 * MIB
MAX_ENV_FILE_BYTES = 1 * MIB
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 100_000
MAX_INT_DIGITS = 100
MAX_START_TASK_FILE_BYTES = 16 * MIB
MAX_START_TASKS = 100_000
MAX_MODULES = 1_000
MAX_NAME_CHARS = 64

MAX_SLOTS = 1_024
MAX_DURATION_S = 30 * 24 * 3600.0
MAX_ATTEMPTS = 1_000
MAX_RETRIES = 1_000
MAX_BACKOFF_FACTOR = 100.0
MAX_OUTPUT_TEXT_SIZE = 256 * KIB
MAX_ERROR_BUDGET_FAILURES = 1_000_000
MAX_TASKS_PER_HOST = 65_536
MAX_BACKLOG = 100_000_000
MAX_GB = 1_000_000.0

MAX_SLOT_ENTRIES = 1_024
MAX_HOST_PATTERN_CHARS = 253
MAX_SLOT_EXPR_CHARS = 100
MAX_ENV_CASCADE = 16

MAX_PIDS = 1_000_000
MAX_CPUS = 1_024
MIN_MEMORY_BYTES = 6 * MIB
MAX_MEMORY_BYTES = 64 * 1024 * 1024 * MIB
MAX_CAPS = 64
MAX_SECRETS = 64
MAX_SECRET_BYTES = 64 * KIB


def shown(value: float) -> str:
    """A number for a message: `2592000.0` -> `2592000`, `1e300` -> `1e+300`."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**15:
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


def duration_text(seconds: float) -> str:
    """`2592000` -> `30 days (2592000 s)`, for messages naming a duration limit."""
    days = seconds / 86400
    return f"{shown(days)} days ({shown(seconds)} s)" if days >= 1 else f"{shown(seconds)} s"


def within_limit(value: Any, limit: float, name: str) -> Any:
    """`value` unless it is a boolean, a non-finite number or a number over `limit` (named `name` in the
    ValueError). Other values pass, for pydantic to check their type and lower bound."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        if value > limit:
            raise ValueError(f"must be less than or equal to {shown(limit)} (the limit, {name}), got {shown(value)}")
    return value
