"""How long `scalebox local up` waits for a starting broker (pure).

A broker that was stopped uncleanly recovers every partition directory before it answers: thousands of them take
minutes. Waiting for a fixed time fails such a start for nothing, so the wait lasts while the broker's log keeps
advancing, and gives up only when the log has been silent for `stall_s` seconds, or after `ceiling_s` in all.
"""

from __future__ import annotations

STARTUP_CEILING_S = 1800.0
"""The longest a start may take, even while the broker's log still advances."""
SLOW_NOTICE_S = 15.0
"""After this long, `up` says once what it is waiting for."""


def silent_for(now: float, waiting_since: float, log_touched: float | None) -> float:
    """Seconds without a sign of progress: since the log last changed, or since the wait began if later."""
    last_sign = waiting_since if log_touched is None else max(waiting_since, log_touched)
    return max(0.0, now - last_sign)


def give_up_reason(waited_s: float, silent_s: float, stall_s: float,
                   ceiling_s: float = STARTUP_CEILING_S) -> str | None:
    """Why to stop waiting for the broker, or None to keep waiting."""
    if silent_s >= stall_s:
        return f"its log has been silent for {silent_s:.0f}s"
    if waited_s >= ceiling_s:
        return f"still starting after {waited_s:.0f}s"
    return None
