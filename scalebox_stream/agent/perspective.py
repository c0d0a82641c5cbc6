"""Reading back the perspective files a user program leaves in its work directory."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scalebox_stream.agent.limits import (
    MAX_LISTED_FILES,
    MAX_MESSAGE_TEXT_CHARS,
    MAX_PERSPECTIVE_FILE_BYTES,
    MAX_PROBLEMS,
    MAX_TEXT_BYTES,
    MAX_USER_TIMESTAMPS,
)
from scalebox_stream.agent.workfiles import ProgramView, file_size, open_dir, read_one, read_work_file, shown

_TS = re.compile(
    r"^\s*(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?\s*$",
    re.IGNORECASE,
)
CUSTOM_OUT = "custom-out.txt"
EXTRA_ATTRIBUTES = "extra-attributes.txt"
PERSPECTIVE_FILES = (CUSTOM_OUT, "task-exec.json", "timestamps.txt", "input-files.txt", "output-files.txt",
                     EXTRA_ATTRIBUTES)
"""The files read back after an attempt, in the order they are applied."""
MAX_EXTRA_ATTRIBUTES_BYTES = 64 * 1024
"""Bytes of extra-attributes.txt; a larger one is not read (a warning says so)."""
MAX_EXTRA_ATTRIBUTES_DEPTH = 32
"""How deeply the JSON values of extra-attributes.txt may nest."""
_KEY = re.compile(r"^[^\s=]+$")


def storable(text: str) -> str:
    """`text` as every event and table can hold it: a NUL (which PostgreSQL text refuses, so the projector would
    dead-letter the report and the task would look running forever) and lone surrogates (which UTF-8 cannot
    encode) become backslash escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class PerspectiveError(ValueError):
    """A perspective file that cannot be read."""


@dataclass
class Perspective:
    """What the program reported about itself through files in its work directory."""

    custom_out: bytes = b""
    message_text: str | None = None
    status_code: int | None = None
    input_bytes: int | None = None
    output_bytes: int | None = None
    timestamps: list[tuple[int, str | None]] = field(default_factory=list)
    extra_attributes: dict[str, Any] | None = None
    """extra-attributes.txt, parsed (a JSON object, or `key=value` lines)."""
    problems: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Perspective files not read because they are not regular files (a link, a FIFO, a device)."""

    @property
    def error(self) -> str | None:
        """Why the attempt is an error for what it left in its work directory, or None."""
        return "; ".join(self.refused) or None


def parse_timestamp(text: str) -> int:
    """RFC 3339 (0, 3, 6 or 9 fractional digits, `.` or `,`, `Z`/`+hh:mm`/`+hhmm`) to µs since the epoch.

    A timestamp without an offset is taken as UTC.
    """
    match = _TS.match(text)
    if not match:
        raise PerspectiveError(f"not an RFC 3339 timestamp: {shown(text.strip())!r}")
    date, clock, fraction, offset = match.groups()
    base = datetime.fromisoformat(f"{date}T{clock}")
    if offset and offset.upper() != "Z":
        offset = offset if ":" in offset else f"{offset[:3]}:{offset[3:]}"
        base = datetime.fromisoformat(f"{date}T{clock}{offset}")
    else:
        base = base.replace(tzinfo=UTC)
    micros = int((fraction or "0").ljust(9, "0")[:6])
    return int(base.timestamp()) * 1_000_000 + micros


def parse_timestamp_lines(text: str) -> list[tuple[int, str | None]]:
    """Lines of `timestamp[,label]` to (µs, label) pairs; a comma inside the fraction is not a label."""
    result: list[tuple[int, str | None]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        stamp, label = line, None
        for cut in [i for i, ch in enumerate(line) if ch == ","][::-1]:
            try:
                result.append((parse_timestamp(line[:cut]), storable(line[cut + 1 :].strip()) or None))
                break
            except PerspectiveError:
                continue
        else:
            try:
                result.append((parse_timestamp(stamp), label))
            except PerspectiveError as exc:
                raise PerspectiveError(f"timestamps.txt line {number}: {exc}") from exc
    return result


def _depth(value: Any, level: int = 0) -> int:
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _no_constant(name: str) -> Any:
    raise PerspectiveError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise PerspectiveError(f"{shown(text)} is out of range")
    return value


def parse_extra_attributes(text: str) -> dict[str, Any]:
    """extra-attributes.txt to a dict: a JSON object, or `key=value` lines (blank lines and `#` comments
    skipped; the value is the text after the first `=`, kept as a string). Raises PerspectiveError."""
    stripped = text.strip()
    if not stripped:
        return {}
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped, parse_constant=_no_constant, parse_float=_finite)
        except (ValueError, RecursionError) as exc:
            raise PerspectiveError(f"not a JSON object: {exc}") from None
        if not isinstance(data, dict):
            raise PerspectiveError("not a JSON object")
        if _depth(data) > MAX_EXTRA_ATTRIBUTES_DEPTH:
            raise PerspectiveError(f"nested deeper than {MAX_EXTRA_ATTRIBUTES_DEPTH} levels")
        return data
    result: dict[str, Any] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY.match(key.strip()):
            raise PerspectiveError(f"line {number} is not key=value (or the file a JSON object): "
                                   f"{shown(line)!r}")
        result[key.strip()] = value.strip()
    return result


def extra_attributes_json(attributes: dict[str, Any] | None, clean: Any = None) -> str | None:
    """The attributes as the compact JSON object a TaskFinished carries (None when there are none). Every
    string, key or value, goes through `storable` and then `clean` (the secrets' redaction), so the text is
    always valid JSON that PostgreSQL's jsonb accepts (no NUL, no lone surrogate)."""
    if not attributes:
        return None

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            value = storable(value)
            return clean(value) if clean is not None else value
        if isinstance(value, dict):
            return {scrub(str(k)): scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return json.dumps(scrub(attributes), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sum_file_sizes(names: Iterable[str], view: ProgramView, problems: list[str], label: str) -> int:
    """Sum the sizes of the regular files named (at most MAX_LISTED_FILES of them), as `view` maps them;
    a name that is no such file adds a problem (prefixed with `label`) and nothing to the sum."""
    total = 0
    counted = 0
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if counted == MAX_LISTED_FILES:
            problems.append(f"{label}: more than {MAX_LISTED_FILES} files named; the rest are not counted")
            break
        counted += 1
        size, problem = file_size(view, name)
        if problem is not None:
            problems.append(f"{label}: {problem}")
        else:
            total += size or 0
    return total


def listing(work_dir: Path) -> set[str]:
    """The names in a work directory (none if it is gone)."""
    try:
        return set(os.listdir(work_dir))
    except OSError:
        return set()


def read_bytes(path: Path, limit: int = MAX_PERSPECTIVE_FILE_BYTES) -> bytes | None:
    """At most the first `limit` bytes of a work-dir file (see `workfiles.read_work_file`); None if it is
    missing, a directory, or not a regular file."""
    return read_one(path.parent, path.name, limit).data


def _apply_task_exec(perspective: Perspective, data: dict[str, Any], view: ProgramView) -> None:
    if not isinstance(data, dict):
        raise PerspectiveError("not a JSON object")
    if isinstance(data.get("statusCode"), int):
        perspective.status_code = data["statusCode"]
    text = data.get("messageText", data.get("userText"))
    if text is not None:
        perspective.message_text = storable(str(text)[:MAX_MESSAGE_TEXT_CHARS])
    for key, attr in (("inputBytes", "input_bytes"), ("outputBytes", "output_bytes")):
        if isinstance(data.get(key), int):
            setattr(perspective, attr, data[key])
    for key, attr in (("inputFiles", "input_bytes"), ("outputFiles", "output_bytes")):
        if isinstance(data.get(key), list) and getattr(perspective, attr) is None:
            setattr(perspective, attr, sum_file_sizes(map(str, data[key]), view, perspective.problems,
                                                      f"task-exec.json {key}"))
    for item in data.get("timestamps") or []:
        label = None
        if isinstance(item, dict):
            item, label = item.get("timestamp") or item.get("at", ""), item.get("label")
        perspective.timestamps.extend(parse_timestamp_lines(f"{item},{label}" if label else str(item)))


def _add_sizes(perspective: Perspective, attr: str, text: str, view: ProgramView, label: str) -> None:
    total = sum_file_sizes(text.split("\n"), view, perspective.problems, label)
    setattr(perspective, attr, (getattr(perspective, attr) or 0) + total)


def read_perspective(work_dir: Path, view: ProgramView | None = None, names: set[str] | None = None,
                     text_limit: int = MAX_TEXT_BYTES, mode: str = "HEAD") -> Perspective:
    """Read task-exec.json, timestamps.txt, custom-out.txt, extra-attributes.txt and the file lists; never raises.

    `view` maps the paths the file lists name to this host's files (default: the work directory only).
    `names`: the work directory's listing, when the caller has it (only the files in it are opened).
    custom-out.txt is read up to `text_limit` bytes (at most MAX_TEXT_BYTES), the end `mode` keeps (see
    `cap_text`). A perspective file that is not a regular file (a link, a FIFO, a device) is refused and
    named in `refused`; other problems are collected, not raised.
    """
    perspective = Perspective()
    if names is None:
        names = listing(work_dir)
    wanted = [name for name in PERSPECTIVE_FILES if name in names]
    if not wanted:
        return perspective
    dir_fd = open_dir(work_dir)
    if dir_fd is None:
        return perspective
    try:
        _read_files(perspective, dir_fd, wanted, view or ProgramView.of_work_dir(work_dir), text_limit, mode)
    finally:
        os.close(dir_fd)
    if len(perspective.timestamps) > MAX_USER_TIMESTAMPS:
        perspective.problems.append(f"{len(perspective.timestamps)} user timestamps; the first "
                                    f"{MAX_USER_TIMESTAMPS} are kept")
        del perspective.timestamps[MAX_USER_TIMESTAMPS:]
    if len(perspective.problems) > MAX_PROBLEMS:
        more = len(perspective.problems) - MAX_PROBLEMS
        perspective.problems[MAX_PROBLEMS:] = [f"and {more} more problems"]
    return perspective


def _read_files(perspective: Perspective, dir_fd: int, wanted: list[str], view: ProgramView, text_limit: int,
                mode: str) -> None:
    steps = {
        "task-exec.json": lambda t: _apply_task_exec(perspective, json.loads(t), view),
        "timestamps.txt": lambda t: perspective.timestamps.extend(parse_timestamp_lines(t)),
        "input-files.txt": lambda t: _add_sizes(perspective, "input_bytes", t, view, "input-files.txt"),
        "output-files.txt": lambda t: _add_sizes(perspective, "output_bytes", t, view, "output-files.txt"),
        EXTRA_ATTRIBUTES: lambda t: setattr(perspective, "extra_attributes", parse_extra_attributes(t) or None),
    }
    for name in wanted:
        if name == CUSTOM_OUT:
            limit = min(text_limit, MAX_TEXT_BYTES)
            read = read_work_file(dir_fd, name, limit, "tail" if mode.upper() == "HEAD" else "head")
            perspective.custom_out = read.data or b""
        else:
            limit = MAX_EXTRA_ATTRIBUTES_BYTES if name == EXTRA_ATTRIBUTES else MAX_PERSPECTIVE_FILE_BYTES
            read = read_work_file(dir_fd, name, limit, whole=True)
            if read.size > limit:
                perspective.problems.append(f"{name} is larger than {limit} bytes: not read")
                continue
        if read.problem is not None:
            perspective.refused.append(read.problem)
        if read.data is None or name == CUSTOM_OUT:
            continue
        try:
            steps[name](read.data.decode("utf-8", errors="backslashreplace"))
        except (PerspectiveError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            perspective.problems.append(f"{name}: {exc}" + ("; not kept" if name == EXTRA_ATTRIBUTES else ""))


def cap_text(data: bytes, limit: int, mode: str = "HEAD") -> str:
    """Cap program output to `limit` bytes, Scalebox style, and decode it without ever failing.

    `HEAD` (the default) drops the head and keeps the tail; `TAIL` keeps the head. Invalid UTF-8 is
    kept as backslash escapes, and so is a NUL (see `storable`). Never more than MAX_TEXT_BYTES are kept.
    """
    limit = min(limit, MAX_TEXT_BYTES)
    if len(data) > limit:
        data = data[-limit:] if mode.upper() == "HEAD" else data[:limit]
    return storable(data.decode("utf-8", errors="backslashreplace"))
