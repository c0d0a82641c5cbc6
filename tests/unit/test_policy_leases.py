"""Lost attempts (lapsed heartbeats) and fencing of stale attempts."""

from __future__ import annotations

import pytest

from scalebox_stream.policy.leases import is_stale_attempt, lease_expired


def test_lease_expires_after_missed_heartbeats() -> None:
    assert not lease_expired(100, 100, 10)
    assert not lease_expired(100, 130, 10)          # exactly three intervals: not yet
    assert lease_expired(100, 130.5, 10)
    assert not lease_expired(100, 145, 10, misses=5)
    assert lease_expired(100, 111, 10, misses=1)


def test_bad_lease_arguments() -> None:
    with pytest.raises(ValueError):
        lease_expired(0, 1, 0)
    with pytest.raises(ValueError):
        lease_expired(0, 1, 1, misses=0)


def test_fencing() -> None:
    assert is_stale_attempt(1, 2)
    assert not is_stale_attempt(2, 2)
    assert not is_stale_attempt(3, 2)  # a newer attempt than we know of is not stale
