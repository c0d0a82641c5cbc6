"""Task bodies and headers the user hands the CLI, checked before anything is deployed or published (pure).

Bytes that are not UTF-8 (from argv, which Python decodes with `surrogateescape`, or from stdin, read here
the same way) survive as lone surrogates, so `check_body` and `check_headers` name them instead of a
UnicodeError surfacing later from the Kafka client or the projection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scalebox_stream.policy.broadcast import broadcast_problem
from scalebox_stream.spec.limits import check_body, check_headers


def body_lines(data: bytes) -> list[str]:
    """Task bodies from stdin's bytes: one per line (split on `\\n` only, a trailing `\\r` dropped), blank
    lines skipped; undecodable bytes kept as surrogates for `check_body` to refuse."""
    text = data.decode("utf-8", "surrogateescape")
    return [line.removesuffix("\r") for line in text.split("\n") if line.strip()]


def parse_header_pairs(pairs: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """`key=value` pairs as a dict, and why they cannot be headers (a pair without `=` or key, a bad key or
    value, too large in all), or None."""
    headers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            return headers, f"bad header {_shown(pair)}: expected key=value"
        headers[key] = value
    return headers, check_headers(headers)


def tasks_problem(bodies: Sequence[str], headers: Mapping[str, str] | None = None) -> str | None:
    """Why these task bodies and headers cannot be sent (the first problem, naming the body by its position
    when there are several), or None."""
    if headers and (problem := check_headers(headers) or broadcast_problem(headers)):
        return problem
    for index, body in enumerate(bodies, start=1):
        if problem := check_body(body):
            return problem if len(bodies) == 1 else f"task {index} of {len(bodies)}: {problem}"
    return None


def _shown(text: str, width: int = 60) -> str:
    """`text` quoted for a message: undecodable bytes escaped, cut to `width` characters."""
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return repr(shown if len(shown) <= width else shown[:width] + "...")
