"""Watches, from a thread of its own, whether the broker still counts a consumer a member of its group."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from scalebox_stream.policy.membership import CHECK_INTERVAL_S, REJOIN_AFTER_S, absent_since, must_rejoin

log = logging.getLogger(__name__)


class MembershipWatch:
    """Looks up the group's members every `interval_s` and keeps when the consumer's member id (read through
    `member_id`, which may change when the consumer is replaced; it must not call the consumer's `memberid()`,
    which blocks while another thread polls) was first missing; see `policy.membership`. `lost()` is cheap:
    the poll loop may ask on every turn."""

    def __init__(self, admin: AdminClient, group: str, member_id: Callable[[], str | None],
                 interval_s: float = CHECK_INTERVAL_S, rejoin_after_s: float = REJOIN_AFTER_S) -> None:
        self.admin, self.group, self.member_id = admin, group, member_id
        self.interval_s, self.rejoin_after_s = interval_s, rejoin_after_s
        self._since: float | None = None
        self._resets = 0  # a look that began before a reset must not bring the old absence back
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="group-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def lost(self) -> bool:
        """Whether the broker has not counted the consumer a member for `rejoin_after_s`."""
        return must_rejoin(self._since, time.monotonic(), self.rejoin_after_s)

    def absent_for(self) -> float:
        """Seconds since the member was first missing (0 if it is not)."""
        since = self._since
        return 0.0 if since is None else time.monotonic() - since

    def reset(self) -> None:
        """Start counting again (the consumer was just replaced)."""
        with self._lock:
            self._since = None
            self._resets += 1

    def close(self) -> None:
        self._stop.set()

    def present(self) -> bool | None:
        """Whether the group's members include the consumer's member id; None if either is unknown now."""
        try:
            member = self.member_id()
            description = self.admin.describe_consumer_groups([self.group], request_timeout=10)[self.group].result()
        except KafkaException as exc:
            log.debug("group %s not described: %s", self.group, exc)
            return None
        return bool(member) and any(m.member_id == member for m in description.members)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            resets = self._resets
            present = self.present()
            with self._lock:
                if resets == self._resets:
                    self._since = absent_since(present, self._since, time.monotonic())
