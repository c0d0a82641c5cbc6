"""Reading back the perspective files a user program leaves in its work directory."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_TS = re.compile(
    r"^\s*(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?\s*$",
    re.IGNORECASE,
)


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
    problems: list[str] = field(default_factory=list)


def parse_timestamp(text: str) -> int:
    """RFC 3339 (0, 3, 6 or 9 fractional digits, `.` or `,`, `Z`/`+hh:mm`/`+hhmm`) to µs since the epoch.

    A timestamp without an offset is taken as UTC.
    """
    match = _TS.match(text)
    if not match:
        raise PerspectiveError(f"not an RFC 3339 timestamp: {text.strip()!r}")
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
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        stamp, label = line, None
        for cut in [i for i, ch in enumerate(line) if ch == ","][::-1]:
            try:
                result.append((parse_timestamp(line[:cut]), line[cut + 1 :].strip() or None))
                break
            except PerspectiveError:
                continue
        else:
            try:
                result.append((parse_timestamp(stamp), label))
            except PerspectiveError as exc:
                raise PerspectiveError(f"timestamps.txt line {number}: {exc}") from exc
    return result


def sum_file_sizes(listing: str, root: Path | None = None) -> int:
    """Sum the sizes of the files named one per line; relative names are taken from `root`."""
    total = 0
    for line in listing.splitlines():
        name = line.strip()
        if not name:
            continue
        path = Path(name)
        if not path.is_absolute() and root is not None:
            path = root / path
        try:
            total += path.stat().st_size
        except OSError as exc:
            raise PerspectiveError(f"cannot stat {name}: {exc.strerror}") from exc
    return total


def listing(work_dir: Path) -> set[str]:
    """The names in a work directory (none if it is gone)."""
    try:
        return set(os.listdir(work_dir))
    except OSError:
        return set()


def read_bytes(path: Path) -> bytes | None:
    """The bytes of a file; None if it is missing or a directory. Plain system calls (open, reads, close),
    no Python file object: a slot reads a few such files per task."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 18):
            chunks.append(chunk)
        return b"".join(chunks)
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)


def _read(path: Path) -> str | None:
    data = read_bytes(path)
    return None if data is None else data.decode("utf-8", errors="backslashreplace")


def _apply_task_exec(perspective: Perspective, data: dict[str, Any]) -> None:
    if isinstance(data.get("statusCode"), int):
        perspective.status_code = data["statusCode"]
    text = data.get("messageText", data.get("userText"))
    if text is not None:
        perspective.message_text = str(text)
    for key, attr in (("inputBytes", "input_bytes"), ("outputBytes", "output_bytes")):
        if isinstance(data.get(key), int):
            setattr(perspective, attr, data[key])
    for key, attr in (("inputFiles", "input_bytes"), ("outputFiles", "output_bytes")):
        if isinstance(data.get(key), list) and getattr(perspective, attr) is None:
            setattr(perspective, attr, sum_file_sizes("\n".join(map(str, data[key]))))
    for item in data.get("timestamps") or []:
        label = None
        if isinstance(item, dict):
            item, label = item.get("timestamp") or item.get("at", ""), item.get("label")
        perspective.timestamps.extend(parse_timestamp_lines(f"{item},{label}" if label else str(item)))


def read_perspective(work_dir: Path, host_root: Path | None = None, names: set[str] | None = None) -> Perspective:
    """Read task-exec.json, timestamps.txt, custom-out.txt and the file lists; never raises.

    `host_root` maps absolute paths named in file lists when the program ran in a container whose
    files the agent cannot see (None: paths are read as they are). `names`: the work directory's listing, when
    the caller has it (only the files in it are opened). Problems are collected, not raised.
    """
    perspective = Perspective()
    if names is None:
        names = listing(work_dir)
    if "custom-out.txt" in names:
        perspective.custom_out = read_bytes(work_dir / "custom-out.txt") or b""
    steps = [
        ("task-exec.json", lambda t: _apply_task_exec(perspective, json.loads(t))),
        ("timestamps.txt", lambda t: perspective.timestamps.extend(parse_timestamp_lines(t))),
        ("input-files.txt", lambda t: setattr(perspective, "input_bytes",
                                              (perspective.input_bytes or 0) + sum_file_sizes(t, work_dir))),
        ("output-files.txt", lambda t: setattr(perspective, "output_bytes",
                                               (perspective.output_bytes or 0) + sum_file_sizes(t, work_dir))),
    ]
    for name, apply in steps:
        text = _read(work_dir / name) if name in names else None
        if text is None:
            continue
        try:
            apply(text)
        except (PerspectiveError, ValueError, TypeError, AttributeError) as exc:
            perspective.problems.append(f"{name}: {exc}")
    return perspective


def cap_text(data: bytes, limit: int, mode: str = "HEAD") -> str:
    """Cap program output to `limit` bytes, Scalebox style, and decode it without ever failing.

    `HEAD` (the default) drops the head and keeps the tail; `TAIL` keeps the head. Invalid UTF-8 is
    kept as backslash escapes.
    """
    if len(data) > limit:
        data = data[-limit:] if mode.upper() == "HEAD" else data[:limit]
    return data.decode("utf-8", errors="backslashreplace")
