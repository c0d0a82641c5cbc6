"""Where a module's slots run: Scalebox's `slots:` host list, `slot_on_head`, and the head host.

Scalebox writes `slots:` as a list of `<host>[:<count>[:<group_prefix>]]` entries (`h0:2`,
`${CALC_NODE}:${NUM_PARALLEL}`, `n-[01][01]:4`). `<host>` is a host name or a regular expression over host
names (matched against the whole name); `<count>` is the number of slots on each matching host (default 1,
also when blank: `h0:` is `h0:1`); `<group_prefix>` names the group of a grouped HOST-BOUND slot.

`h0` is the head: the machine the app is run from, unless the app file's `clusters:` names another host
with `role: head`. `slot_on_head` is one slot on the head. The plain integer form (`slots: 2`) keeps its
meaning: that many slots on each host that runs an agent of the module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import FieldError
from .limits import MAX_HOST_PATTERN_CHARS, MAX_SLOT_ENTRIES, MAX_SLOTS

DEFAULT_HEAD = "h0"


class SlotPlacement(BaseModel):
    """One entry of a host list: `count` slots on each host whose name matches `host`."""

    model_config = ConfigDict(frozen=True)

    host: str
    """A host name or a regular expression matched against whole host names (`h0`, `n-[01][01]`)."""
    count: int = 1
    group_prefix: str | None = None

    def matches(self, host: str) -> bool:
        """Whether this entry places slots on `host`."""
        return self.host == host or re.fullmatch(self.host, host) is not None


def parse_entry(item: Any) -> SlotPlacement:
    """`h0`, `h0:2`, `n-[01][01]:4:grp`, or a mapping `{host:, count:, group_prefix:}`; ValueError otherwise."""
    if isinstance(item, dict):
        unknown = set(item) - {"host", "count", "group_prefix"}
        if unknown:
            raise ValueError(f"unknown key {sorted(unknown)[0]!r} (expected host, count, group_prefix)")
        host, count, prefix = item.get("host"), item.get("count", 1), item.get("group_prefix")
    elif isinstance(item, str):
        host, _, rest = item.strip().partition(":")
        count_text, _, prefix = rest.partition(":")
        count = count_text.strip() or 1
        prefix = prefix.strip() or None
    else:
        raise ValueError(f"expected '<host>[:<count>]', e.g. 'h0:2', got {item!r}")
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"no host in {item!r}: expected '<host>[:<count>]', e.g. 'h0:2'")
    host = host.strip()
    if len(host) > MAX_HOST_PATTERN_CHARS:
        raise ValueError(f"the host pattern is {len(host)} characters, over the limit of {MAX_HOST_PATTERN_CHARS} "
                         "(MAX_HOST_PATTERN_CHARS)")
    try:
        re.compile(host)
    except re.error as exc:
        raise ValueError(f"host {host!r} is not a valid regular expression: {exc}") from None
    if isinstance(count, bool) or not (isinstance(count, int) or (isinstance(count, str) and count.isdigit())):
        raise ValueError(f"the slot count in {item!r} must be a whole number >= 1, got {count!r}")
    number = int(count)
    if not 1 <= number <= MAX_SLOTS:
        raise ValueError(f"the slot count in {item!r} must be between 1 and {MAX_SLOTS} (MAX_SLOTS), got {number}")
    return SlotPlacement(host=host, count=number, group_prefix=prefix)


def parse_placement(value: Any) -> list[SlotPlacement]:
    """A host list (a list of entries, or one string of comma-separated entries); FieldError naming each bad
    entry by its index."""
    if isinstance(value, str):
        items: Sequence[Any] = [part for part in value.split(",") if part.strip()]
        single = True
    elif isinstance(value, list):
        items, single = value, False
    else:
        raise FieldError.at((), f"expected a number of slots or a host list such as [h0:2], got {value!r}")
    if len(items) > MAX_SLOT_ENTRIES:
        raise FieldError.at((), f"{len(items)} host entries, over the limit of {MAX_SLOT_ENTRIES} (MAX_SLOT_ENTRIES)")
    if not items:
        raise FieldError.at((), "an empty host list: give at least one entry such as h0:1")
    out: list[SlotPlacement] = []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for index, item in enumerate(items):
        try:
            out.append(parse_entry(item))
        except ValueError as exc:
            problems.append(((() if single else (index,)), str(exc)))
    if problems:
        raise FieldError(problems)
    return out


def slots_on(placement: Sequence[SlotPlacement], host: str) -> int:
    """Slots the placement puts on `host` (the sum over the entries that match it; 0 if none does)."""
    return sum(entry.count for entry in placement if entry.matches(host))


def head_of(clusters: dict[str, Any], cluster: str) -> str:
    """The head host of `cluster`: its host with `role: head` in the app file's `clusters:`, else `h0`."""
    definition = clusters.get(cluster)
    hosts = definition.get("hosts") if isinstance(definition, dict) else None
    if isinstance(hosts, dict):
        for name, host in hosts.items():
            if isinstance(host, dict) and str(host.get("role", "")).lower() == "head":
                return str(name)
    return DEFAULT_HEAD
