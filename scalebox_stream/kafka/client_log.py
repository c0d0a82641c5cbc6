"""The edge between librdkafka's two voices (its log lines, its error events) and Python logging: everything
they say goes through one `policy.kafka_log.KafkaLogPolicy` per process, so an outage reads as a few lines
however many clients the process has and however often they retry. A thread of its own ticks the policy and
probes the brokers it suspects (a TCP connection, closed at once) while it has something open (an outage,
counted repeats), and ends when it has not."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from scalebox_stream.policy.kafka_log import KafkaLogPolicy, Line

TICK_S = 1.0
PROBE_TIMEOUT_S = 2.0


def tcp_reachable(broker: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether `broker` (host:port, [v6]:port) accepts a TCP connection now."""
    host, _, port = broker.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


class ClientLog:
    """A process's gate for librdkafka's lines: `say` is safe from any thread."""

    def __init__(self, logger: logging.Logger, policy: Callable[[], KafkaLogPolicy] = KafkaLogPolicy,
                 clock: Callable[[], float] = time.monotonic, tick_s: float = TICK_S,
                 probe: Callable[[str], bool] = tcp_reachable) -> None:
        self.logger, self._make_policy, self._clock, self._tick_s = logger, policy, clock, tick_s
        self._probe = probe
        self._fresh()

    def _fresh(self) -> None:
        self._policy = self._make_policy()
        self._lock = threading.Lock()
        self._ticking = False

    def say(self, level: int, text: str) -> None:
        """librdkafka said `text` at `level`: log what the policy says to."""
        if not self.logger.isEnabledFor(level):
            return
        with self._lock:
            lines = self._policy.observe(level, text, self._clock())
            start = not self._ticking and not self._policy.idle
            self._ticking = self._ticking or start
        if start:
            threading.Thread(target=self._tick, name="kafka-log", daemon=True).start()
        self._emit(lines)

    def _tick(self) -> None:
        while True:
            time.sleep(self._tick_s)
            with self._lock:
                lines = self._policy.tick(self._clock())
                suspects = self._policy.due_probes(self._clock())
            for broker in suspects:
                reachable = self._probe(broker)
                with self._lock:
                    lines += self._policy.probed(broker, reachable, self._clock())
            with self._lock:
                self._ticking = not self._policy.idle
            self._emit(lines)
            if not self._ticking:
                return

    def _emit(self, lines: list[Line]) -> None:
        for line in lines:
            self.logger.log(line.level, "%s", line.text)


class LibrdkafkaLogger(logging.LoggerAdapter):
    """What the clients get as their `logger`: confluent_kafka calls `log(level, "%s [%s] %s", facility, client,
    message)`; the line goes through the process's `ClientLog`."""

    def __init__(self, gate: ClientLog) -> None:
        super().__init__(gate.logger, {})
        self.gate = gate

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002 - the Logger signature
        """Hand the line to the gate."""
        self.gate.say(level, str(msg) % args if args else str(msg))


GATE = ClientLog(logging.getLogger("librdkafka"))
"""This process's gate: every Kafka client's log lines and error events pass it."""
os.register_at_fork(after_in_child=GATE._fresh)  # a child starts clean: no lock held by a thread it lacks
