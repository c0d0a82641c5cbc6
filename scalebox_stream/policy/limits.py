"""Limits on what a task carries, wherever it comes from: the CLI, a start task, a sink line, a task topic (pure).

The spec layer re-exports them with the app-file limits (`spec.limits`); the agent checks records read from a
topic with the same functions (`policy.intake`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

KIB = 1024
MAX_BODY_BYTES = 64 * KIB
"""A task body, in UTF-8 bytes (it is an argv entry and a text column)."""
MAX_HEADERS_BYTES = 16 * KIB
"""A task's headers, as compact JSON."""
MAX_HEADER_KEY_CHARS = 128
"""One header key."""
HEADER_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _utf8_problem(text: str, what: str) -> str | None:
    """Why `text` cannot be sent as UTF-8 (lone surrogates from undecodable input), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"{what} is not valid UTF-8 (undecodable byte at character {exc.start})"
    return None


def check_body(body: str) -> str | None:
    """Why a task body cannot be sent (too large, NUL byte, not UTF-8), or None if it can."""
    if not isinstance(body, str):
        return f"a task body must be text, got {type(body).__name__}"
    if problem := _utf8_problem(body, "the task body"):
        return problem
    if "\x00" in body:
        return f"the task body contains a NUL byte (at character {body.index(chr(0))})"
    size = len(body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        return f"the task body is {size} bytes, over the limit of {MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)"
    return None


def check_header_key(key: str) -> str | None:
    """Why `key` is not a valid header key, or None."""
    if not isinstance(key, str) or not key:
        return "a header key must be a non-empty string"
    if problem := _utf8_problem(key, f"header key {key!r}"):
        return problem
    if len(key) > MAX_HEADER_KEY_CHARS:
        return f"header key {key[:40]!r}... is {len(key)} characters, over the limit of {MAX_HEADER_KEY_CHARS}"
    if not HEADER_KEY_RE.fullmatch(key):
        return f"bad header key {key!r}: use letters, digits, '_', '.' and '-' (not starting with '.' or '-')"
    return None


def check_headers(headers: Mapping[str, str]) -> str | None:
    """Why a task's headers cannot be sent (bad key, bad value, too large as JSON), or None."""
    for key, value in headers.items():
        if problem := check_header_key(key):
            return problem
        if not isinstance(value, str):
            return f"header {key!r}: the value must be text, got {type(value).__name__}"
        if problem := _utf8_problem(value, f"header {key!r}"):
            return problem
        if "\x00" in value:
            return f"header {key!r} contains a NUL byte"
    size = len(json.dumps(dict(headers), separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_HEADERS_BYTES:
        return f"the headers are {size} bytes as JSON, over the limit of {MAX_HEADERS_BYTES} bytes (MAX_HEADERS_BYTES)"
    return None
