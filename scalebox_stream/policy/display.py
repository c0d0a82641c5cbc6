"""How the CLI shows ids and tables on a terminal: short ids that can be typed back (as git does) and which
columns of a table fit its width. Pure functions; the CLI measures the terminal and draws."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SHORT_ID = 8
"""The shortest id shown: 8 hex digits, unique among a few thousand tasks nearly always; longer when not."""

_ID_PREFIX = re.compile(r"[0-9a-f][0-9a-f-]*")


def short_ids(ids: Iterable[str], known: Iterable[str] = (), min_len: int = SHORT_ID) -> dict[str, str]:
    """Each id's shortest prefix of at least `min_len` characters that no other id (of `ids` or `known`, the
    ids sharing a `min_len` prefix with one of them) starts with, so that the prefix can be typed back."""
    shown = list(dict.fromkeys(ids))
    universe = sorted(set(shown) | set(known))
    result = {}
    for task_id in shown:
        length = min_len
        for other in _neighbours(universe, task_id):
            length = max(length, _common(task_id, other) + 1)
        result[task_id] = task_id[:length]
    return result


def _neighbours(universe: list[str], task_id: str) -> list[str]:
    """The ids next to `task_id` in sorted order: the ones sharing the longest prefix with it."""
    i = bisect.bisect_left(universe, task_id)
    return [universe[j] for j in (i - 1, i + 1) if 0 <= j < len(universe) and universe[j] != task_id]


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class PrefixError(ValueError):
    """A typed id that names no task, or more than one; the message says which and lists the candidates."""


def id_prefix(typed: str) -> str:
    """A typed id (or prefix) normalised for lookup: lower case, stripped; raises PrefixError if it cannot
    start a task id (only hex digits and dashes)."""
    prefix = typed.strip().lower()
    if not _ID_PREFIX.fullmatch(prefix):
        raise PrefixError(f"{typed!r} is not a task id or id prefix (hex digits, e.g. 5e943d67)")
    return prefix


def prefix_range(prefix: str) -> tuple[str, str]:
    """The lowest and highest uuid (32 hex digits) starting with an id prefix (dashes ignored): the prefix
    becomes an index range rather than a text pattern."""
    digits = prefix.replace("-", "")[:32]
    return digits.ljust(32, "0"), digits.ljust(32, "f")


def resolve_prefix(typed: str, matches: Sequence[str], what: str = "task", shown: int = 5) -> str:
    """The one id among `matches` (the ids starting with the prefix, at most `shown + 1` of them), or
    PrefixError: none, or ambiguous with the candidates listed (as git does)."""
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise PrefixError(f"no {what} with an id starting with {typed!r}")
    count = f"more than {shown}" if len(matches) > shown else str(len(matches))
    listed = "".join(f"\n  {m}" for m in matches[:shown]) + ("\n  ..." if len(matches) > shown else "")
    raise PrefixError(f"id prefix {typed!r} is ambiguous: {count} {what}s match; type more of it:{listed}")


@dataclass(frozen=True)
class Column:
    """A table column as the fitting policy sees it: its natural width (widest cell or header), the
    narrowest it may be cut to (`natural` for ids, statuses and numbers: never cut), and its rank (lower
    ranks are dropped first when even cut columns do not fit)."""

    name: str
    natural: int
    cut_to: int
    rank: int


def fit_columns(columns: Sequence[Column], width: int, gap: int = 2) -> dict[str, int]:
    """The columns to draw in `width` characters (`gap` between two), each with its width: all at natural
    width if they fit; else the cuttable ones shrink, widest first, to their `cut_to`; else the lowest-ranked
    are dropped until the rest fit, and the room left goes back to the cut ones. The highest-ranked column is
    always kept."""
    kept = list(columns)
    while True:
        widths = _shrink(kept, width - gap * (len(kept) - 1))
        if widths is not None or len(kept) == 1:
            return widths or {c.name: c.cut_to for c in kept}
        kept.remove(min(kept, key=lambda c: c.rank))


def _shrink(columns: Sequence[Column], room: int) -> dict[str, int] | None:
    """Natural widths cut down, widest cuttable first, until their sum is `room`; None if it cannot be."""
    widths = {c.name: c.natural for c in columns}
    excess = sum(widths.values()) - room
    if excess <= 0:
        return widths
    if sum(c.natural - c.cut_to for c in columns) < excess:
        return None
    floor = {c.name: min(c.cut_to, c.natural) for c in columns}
    while excess > 0:
        widest = max((n for n in widths if widths[n] > floor[n]), key=lambda n: widths[n])
        widths[widest] -= 1
        excess -= 1
    return widths


def pack_fields(head: str, items: Sequence[str], width: int, indent: int = 2) -> list[str]:
    """`head` then the items, two spaces apart (one after a head ending in `:`), in lines of at most `width`
    characters, broken between items only (an item wider than a line gets a line of its own); lines after
    the first are indented."""
    lines, line = [], head
    for item in items:
        if line == head:
            line = f"{head}{' ' if head.endswith(':') else '  '}{item}"
        elif len(line) + 2 + len(item) > width:
            lines.append(line)
            line = " " * indent + item
        else:
            line = f"{line}  {item}"
    return [*lines, line]
