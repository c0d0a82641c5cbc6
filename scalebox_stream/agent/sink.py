"""Parsing of `sink-tasks.txt`: the messages a user program emits for the next modules."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from scalebox_stream.agent.limits import MAX_SINK_FILE_BYTES, MAX_SINK_LINE_BYTES, MAX_SINK_LINES
from scalebox_stream.agent.workfiles import read_one
from scalebox_stream.policy.broadcast import broadcast_problem
from scalebox_stream.policy.limits import check_body, check_headers

SINK_FILE = "sink-tasks.txt"
OLD_SINK_FILE = "messages.txt"
"""Scalebox's older name of sink-tasks.txt (read too, before it)."""
JSONL_SINK_FILE = "sink-tasks.jsonl"
"""Where the in-task tools (`scalebox task add`, `send-message`) put the tasks they add: one JSON object per
line, `{"module"?: str, "body": str, "headers"?: {..} | [{..}, ...]}`, so any body round-trips."""
OUTPUT_FILES = (OLD_SINK_FILE, SINK_FILE, JSONL_SINK_FILE)
"""The files an attempt's messages are read from, in this order."""
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
    if problem := check_body(rest) or check_headers(headers) or broadcast_problem(headers):
        raise SinkLineError(problem)  # the next agent would refuse the child: the parent's attempt fails instead
    return SinkMessage(body=rest, module=module, headers=headers)


def parse_sink_file(text: str, modules: Collection[str]) -> list[SinkMessage]:
    """Parse every line of a sink-tasks.txt file; errors name the line number.

    Lines end at `\n` only (a `\r` before it is dropped): `\x0b`, `\x85`, `\u2028` and the like are
    part of a body."""
    return _parse_lines(text, modules, parse_sink_line, SINK_FILE)


def _parse_lines(text: str, modules: Collection[str], parse_line: Callable[[str, Collection[str]], SinkMessage | None],
                 name: str) -> list[SinkMessage]:
    """Every message of a file whose lines `parse_line` reads (split on `\n` only); errors name the line."""
    messages = []
    for number, line in enumerate(text.split("\n"), start=1):
        try:
            message = parse_line(line, modules)
        except SinkLineError as exc:
            raise SinkLineError(f"{name} line {number}: {exc}") from exc
        if message is not None:
            messages.append(message)
    return messages


def parse_jsonl_line(line: str, modules: Collection[str]) -> SinkMessage | None:
    """Parse one line of sink-tasks.jsonl: `{"module"?: str, "body": str, "headers"?: object | [object, ...]}`
    (a list of header objects is merged in order). Blank lines give None."""
    if not line.strip(BLANK):
        return None
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SinkLineError(f"not a JSON object: {exc.msg}") from None
    if not isinstance(item, dict) or not isinstance(item.get("body"), str) or set(item) - {"module", "body", "headers"}:
        raise SinkLineError('a line is an object with "body" (a string), "module" and "headers" only')
    module = item.get("module")
    if module is not None and (not isinstance(module, str) or module not in modules):
        raise SinkLineError(f"no module {module!r} in the app")
    raw = item.get("headers", {})
    parts = raw if isinstance(raw, list) else [raw]
    headers: dict[str, str] = {}
    for part in parts:
        if not isinstance(part, dict):
            raise SinkLineError("headers are a JSON object (or a list of them)")
        headers.update({str(k): v if isinstance(v, str) else json.dumps(v) for k, v in part.items()})
    body = item["body"]
    if not body:
        raise SinkLineError("empty task body")
    if problem := check_body(body) or check_headers(headers) or broadcast_problem(headers):
        raise SinkLineError(problem)
    return SinkMessage(body=body, module=module, headers=headers)


def parse_jsonl_file(text: str, modules: Collection[str]) -> list[SinkMessage]:
    """Parse every line of a sink-tasks.jsonl file; errors name the line number."""
    return _parse_lines(text, modules, parse_jsonl_line, JSONL_SINK_FILE)


def check_sink_limits(data: bytes, name: str = SINK_FILE) -> None:
    """Raise SinkLineError if the bytes of a sink file go past a limit: its size, the number of its
    non-blank lines, or the bytes of one line."""
    if len(data) > MAX_SINK_FILE_BYTES:
        raise SinkLineError(f"{name} is {len(data)} bytes; the limit is {MAX_SINK_FILE_BYTES}")
    lines = data.split(b"\n")
    if len(lines) > MAX_SINK_LINES + 1 and (count := sum(1 for x in lines if x.strip(BLANK_BYTES))) > MAX_SINK_LINES:
        raise SinkLineError(f"{name} has {count} lines; the limit is {MAX_SINK_LINES}")
    if len(data) > MAX_SINK_LINE_BYTES:
        for number, line in enumerate(lines, start=1):
            if len(line) > MAX_SINK_LINE_BYTES:
                raise SinkLineError(f"{name} line {number} is {len(line)} bytes; the limit is "
                                    f"{MAX_SINK_LINE_BYTES}")


def read_sink_file(work_dir: Path, modules: Collection[str], name: str = SINK_FILE) -> list[SinkMessage]:
    """The messages of `work_dir`'s sink file `name` (sink-tasks.txt, its old name messages.txt, or the tools'
    sink-tasks.jsonl); none if it is missing or a directory.

    Raises SinkLineError for a file that is not a regular file (a link, a FIFO, a device: never followed
    nor opened), one past a limit (see `check_sink_limits`), or a line that cannot be understood."""
    read = read_one(work_dir, name, MAX_SINK_FILE_BYTES, whole=True)
    if read.problem is not None:
        raise SinkLineError(read.problem)
    if read.data is None and read.size > MAX_SINK_FILE_BYTES:
        raise SinkLineError(f"{name} is {read.size} bytes; the limit is {MAX_SINK_FILE_BYTES}")
    if not read.data:
        return []
    check_sink_limits(read.data, name)
    text = read.data.decode("utf-8", errors="backslashreplace")
    return parse_jsonl_file(text, modules) if name == JSONL_SINK_FILE else parse_sink_file(text, modules)


def read_outputs(work_dir: Path, names: Collection[str], modules: Collection[str]) -> list[SinkMessage]:
    """Every message an attempt left: messages.txt, sink-tasks.txt, then sink-tasks.jsonl, those of them in
    `names` (the work dir's entries); at most MAX_SINK_LINES in all."""
    messages: list[SinkMessage] = []
    for name in OUTPUT_FILES:
        if name in names:
            messages.extend(read_sink_file(work_dir, modules, name))
    if len(messages) > MAX_SINK_LINES:
        raise SinkLineError(f"the attempt emitted {len(messages)} messages; the limit is {MAX_SINK_LINES}")
    return messages
