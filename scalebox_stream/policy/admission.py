"""Admission decisions before an attempt starts (pure): resource limits and the re-check backoff."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GB = 1024**3
RECHECK_INITIAL_S = 0.5
RECHECK_MAX_S = 10.0


@dataclass(frozen=True)
class Verdict:
    """Admit, or refuse with a reason."""

    admitted: bool
    reason: str = ""


ADMIT = Verdict(True)


def quota_verdict(quotas: Mapping[str, float], used_bytes: Mapping[str, int]) -> Verdict:
    """`dir_quota_gb`: each directory's size must stay below its quota."""
    for directory, gb in quotas.items():
        used = used_bytes.get(directory, 0)
        if used >= gb * GB:
            return Verdict(False, f"{directory} holds {used / GB:.2f} GB >= dir_quota_gb {gb:g}")
    return ADMIT


def free_space_verdict(minimums: Mapping[str, float], free_bytes: Mapping[str, int]) -> Verdict:
    """`free_space_gb`: the partition of each directory must keep at least that much free."""
    for directory, gb in minimums.items():
        free = free_bytes.get(directory, 0)
        if free < gb * GB:
            return Verdict(False, f"{directory} has {free / GB:.2f} GB free < free_space_gb {gb:g}")
    return ADMIT


def check_verdict(exit_code: int, output: str = "") -> Verdict:
    """The module's check command: exit 0 admits."""
    if exit_code == 0:
        return ADMIT
    detail = f": {output.strip()[:200]}" if output.strip() else ""
    return Verdict(False, f"check exited {exit_code}{detail}")


def recheck_delay(refusals: int, initial_s: float = RECHECK_INITIAL_S, max_s: float = RECHECK_MAX_S) -> float:
    """Seconds before re-checking a task refused `refusals` times (exponential, capped)."""
    return min(max_s, initial_s * 2 ** max(0, refusals - 1))
