"""Parsing of `sink-tasks.txt`: the messages a user program emits for the next modules."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from scalebox_stream.agent.limits import MAX_SINK_FILE_BYTES, MAX_SINK_LINE_BYTES, MAX_SINK_LINES
from scalebox_stream.agent.workfiles import read_one
from scalebox_stream.policy.limits import check_body, check_headers

SINK_FILE = "sink-tasks.txt"
BLANK = " \t\r"
"""What a blank line may hold (other whitespace, such as `\x0b` or `\u2028`, is a body)."""
BLANK_BYTES = BLANK.encode()


class SinkLineError(ValueError):
    """A line of sink-tasks.txt that cannot be understood."""


@dataclass(frozen=True)
class SinkMessage:
    """One emitted message: target module (None = the default sink), body and headers."""

    body: str
    module: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _split_headers(line: str) -> tuple[str, dict[str, str]]:
    """Split a trailing `,{json}` headers object off a line, if there is one."""
    if not line.endswith("}"):
        return line, {}
    start = line.find(",{")
    while start != -1:
        try:
            headers = json.loads(line[start + 1 :])
        except json.JSONDecodeError:
            start = line.find(",{", start + 1)
            continue
        return line[:start], {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in headers.items()}
    return line, {}


def parse_sink_line(line: str, modules: Collection[str]) -> SinkMessage | None:
    """Parse one line: `body`, `body,{headers}`, `module,body` or `module,body,{headers}`.

    A leading field is taken as a module only when it names a module of the app; a body that is
    itself JSON (starts with `{` or `[`) is kept whole. Blank lines (spaces and tabs only) give None.
    """
    text = line.rstrip("\r\n")
    if not text.strip(BLANK):
        return None
    if text.lstrip()[:1] in "{[":
        try:
            json.loads(text)
            return SinkMessage(body=text)
        except json.JSONDecodeError:
            pass
    rest, headers = _split_headers(text)
    module, sep, body = rest.partition(",")
    if sep and module in modules:
        rest = body
    else:
        module = None
    if not rest:
        raise SinkLineError("empty task body")
    if problem := check_body(rest) or check_headers(headers):
        raise SinkLineError(problem)  # the next agent would refuse the child: the parent's attempt fails instead
    return SinkMessage(body=rest, module=module, headers=headers)


def parse_sink_file(text: str, modules: Collection[str]) -> list[SinkMessage]:
    """Parse every line of a sink-tasks.txt file; errors name the line number.

    Lines end at `\n` only (a `\r` before it is dropped): `\x0b`, `\x85`, `\u2028` and the like are
    part of a body."""
    messages = []
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            message = parse_sink_line(line, modules)
        except SinkLineError as exc:
            raise SinkLineError(f"{SINK_FILE} line {number}: {exc}") from exc
        if message is not None:
            messages.append(message)
    return messages


def check_sink_limits(data: bytes) -> None:
    """Raise SinkLineError if the bytes of a sink file go past a limit: its size, the number of its
    non-blank lines, or the bytes of one line."""
    if len(data) > MAX_SINK_FILE_BYTES:
        raise SinkLineError(f"{SINK_FILE} is {len(data)} bytes; the limit is {MAX_SINK_FILE_BYTES}")
    lines = data.split(b"\n")
    if len(lines) > MAX_SINK_LINES + 1 and (count := sum(1 for x in lines if x.strip(BLANK_BYTES))) > MAX_SINK_LINES:
        raise SinkLineError(f"{SINK_FILE} has {count} lines; the limit is {MAX_SINK_LINES}")
    if len(data) > MAX_SINK_LINE_BYTES:
        for number, line in enumerate(lines, start=1):
            if len(line) > MAX_SINK_LINE_BYTES:
                raise SinkLineError(f"{SINK_FILE} line {number} is {len(line)} bytes; the limit is "
                                    f"{MAX_SINK_LINE_BYTES}")


def read_sink_file(work_dir: Path, modules: Collection[str]) -> list[SinkMessage]:
    """The messages of `work_dir`'s sink-tasks.txt (none if it is missing or a directory).

    Raises SinkLineError for a file that is not a regular file (a link, a FIFO, a device: never followed
    nor opened), one past a limit (see `check_sink_limits`), or a line that cannot be understood."""
    read = read_one(work_dir, SINK_FILE, MAX_SINK_FILE_BYTES, whole=True)
    if read.problem is not None:
        raise SinkLineError(read.problem)
    if read.data is None and read.size > MAX_SINK_FILE_BYTES:
        raise SinkLineError(f"{SINK_FILE} is {read.size} bytes; the limit is {MAX_SINK_FILE_BYTES}")
    if not read.data:
        return []
    check_sink_limits(read.data)
    return parse_sink_file(read.data.decode("utf-8", errors="backslashreplace"), modules)
