"""Parsing of `sink-tasks.txt`: the messages a user program emits for the next modules."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field


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
    itself JSON (starts with `{` or `[`) is kept whole. Blank lines give None.
    """
    text = line.rstrip("\r\n")
    if not text.strip():
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
    return SinkMessage(body=rest, module=module, headers=headers)


def parse_sink_file(text: str, modules: Collection[str]) -> list[SinkMessage]:
    """Parse every line of a sink-tasks.txt file; errors name the line number."""
    messages = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            message = parse_sink_line(line, modules)
        except SinkLineError as exc:
            raise SinkLineError(f"sink-tasks.txt line {number}: {exc}") from exc
        if message is not None:
            messages.append(message)
    return messages
