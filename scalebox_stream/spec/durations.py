"""Durations in app files: a number of seconds, or text such as `'500ms'`, `'2s'`, `'1.5m'`, `'1h'`.

Every duration is finite and at most `limits.MAX_DURATION_S` (30 days).
"""

from __future__ import annotations

import math
import re
from typing import Any

from .limits import MAX_DURATION_S, duration_text

_DURATION = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or `<number>[ms|s|m|h]` in 0..MAX_DURATION_S; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration (seconds, or '500ms', '2s', '1m', '1h'), got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        seconds = float(match.group("number")) * _UNITS[match.group("unit")]
    else:
        raise ValueError(f"expected a duration (seconds, or '500ms', '2s', '1m', '1h'), got {value!r}")
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number >= 0, got {value!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"a duration must be at most {duration_text(MAX_DURATION_S)} (the limit, MAX_DURATION_S), "
                         f"got {value!r}")
    return seconds
