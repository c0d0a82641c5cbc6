"""The agent's explicit limits on what one attempt may hand it, checked before anything is published.

A report that Kafka cannot take would be retried forever and hold every other report of the agent behind
it; so what a program leaves (sink lines, texts, perspective files) is bounded here, and an attempt that
goes past a bound ends as an error that names the bound instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from scalebox_stream.executors.base import ExecResult
from scalebox_stream.spec.limits import MAX_OUTPUT_TEXT_SIZE

MAX_SINK_LINES = 10_000
"""Messages one attempt may emit through sink-tasks.txt (blank lines aside)."""
MAX_CHILDREN = MAX_SINK_LINES
"""Children one report may name (its TaskFinished lists their ids)."""
MAX_SINK_LINE_BYTES = 64 * 1024
"""Bytes of one sink line: its body and headers."""
MAX_SINK_FILE_BYTES = 16 * 1024 * 1024
"""Bytes of sink-tasks.txt: the most the agent reads into memory for one attempt's children."""
MAX_TEXT_BYTES = MAX_OUTPUT_TEXT_SIZE
"""Bytes kept of each of stdout, stderr and custom-out.txt, whatever a module's output_text_size says."""
MAX_PERSPECTIVE_FILE_BYTES = 256 * 1024
"""Bytes of task-exec.json, timestamps.txt, input-files.txt and output-files.txt; a larger one is not read."""
MAX_LISTED_FILES = 10_000
"""Files counted from one file list (input-files.txt, output-files.txt, inputFiles, outputFiles)."""
MAX_USER_TIMESTAMPS = 1_000
"""User timestamps kept for one attempt."""
MAX_MESSAGE_TEXT_CHARS = 64 * 1024
"""Characters kept of task-exec.json's messageText."""
MAX_PROBLEMS = 10
"""Perspective problems reported for one attempt (the rest are counted)."""
MAX_RECORD_BYTES = 1_000_000 - 16 * 1024
"""Bytes of one record's key and value: librdkafka's default message.max.bytes (1,000,000), less room for the
record's headers and framing. A record over it can never be sent."""


class Record(Protocol):
    """What a produced record looks like to the size check."""

    topic: str
    key: str | bytes
    value: bytes


def record_size(record: Record) -> int:
    """The bytes of a record's key and value."""
    key = record.key.encode() if isinstance(record.key, str) else record.key
    return len(key) + len(record.value)


def oversized(records: Iterable[Record], limit: int = MAX_RECORD_BYTES) -> str | None:
    """Why these records cannot all be sent (the first one over `limit` bytes), or None."""
    for record in records:
        size = record_size(record)
        if size > limit:
            return (f"the attempt's report cannot be published: a record for {record.topic} is {size} bytes; "
                    f"the limit is {limit} (stdout, stderr, custom-out.txt, user timestamps and children "
                    "all count)")
    return None


def bare_result(result: ExecResult, reason: str) -> ExecResult:
    """`result` without its texts, failed with `reason`: what is reported when the full report is too large."""
    return replace(result, stdout=b"", stderr=b"", error=reason,
                   stdout_total=len(result.stdout) if result.stdout_total is None else result.stdout_total,
                   stderr_total=len(result.stderr) if result.stderr_total is None else result.stderr_total)
