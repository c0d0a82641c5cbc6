"""What a process logs of what librdkafka tells it, given what it said before, what a probe found, and the time.

While a broker is down, librdkafka reports every refused connection of every client twice (a log line and an
error event), several times a second: a week-long log would be nothing else. `KafkaLogPolicy` says an outage
once when it starts, a summary now and then while it lasts (further and further apart), and once when it is
over (librdkafka's "N/M brokers are down" adds nothing meanwhile); any other line is said when it first comes,
its repeats within a window are counted and said as one line.

Whether a broker is down is not judged from librdkafka's lines alone: they are delivered when the application
polls its client (late, in a burst, if it was busy), and nothing is said when a connection succeeds. So a failed
connection makes the broker a suspect to probe (a plain connection to its address, by the caller); an outage is
said when a probe fails too, summarised at later failed probes, and over when a probe succeeds. A suspect whose
first probe succeeds (a stale line, a broker back at once) is forgotten without a word.

Pure: the caller hands in each line with the clock (`observe`), probes what `due_probes` names and reports the
result (`probed`), and calls `tick` every second or so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

SUMMARY_S = 30.0
"""The first summary of an outage comes this long after its start; each next one twice as long after."""
SUMMARY_MAX_S = 600.0
"""The longest gap between two summaries of one outage."""
PROBE_S = 1.0
"""How often a broker in an outage is probed in its first minute; `PROBE_LATER_S` after."""
PROBE_LATER_S = 5.0
"""How often a broker in an outage is probed after its first minute."""
REPEAT_WINDOW_S = 60.0
"""The same line again within this long (from its first showing) is counted, not shown."""

_UNREACHABLE = re.compile(
    r"(?:\b[a-z_]+://)?(?P<broker>[^\s/\[\]]+?)(?:/(?:bootstrap|\d+))?: "
    r"(?P<reason>Connect to \S+ failed: .+?|Failed to resolve '[^']*': .+?|Connection setup timed out.*?)"
    r"(?: \(after \d+ms in state \w+.*\))?$")
"""A broker connection that could not be made: `sasl_plaintext://127.0.0.1:19092/bootstrap: Connect to
ipv4#127.0.0.1:19092 failed: Connection refused (after 0ms in state CONNECT)`, or `GroupCoordinator:
127.0.0.1:19092: Connect to ...` (a log line has librdkafka's facility, client and thread in front)."""
_BROKERS_DOWN = re.compile(r"\b\d+/\d+ brokers are down")
_CONNECT_TARGET = re.compile(r"^Connect to (?:ipv[46]#)?(?P<address>\S+) failed: ")
_RESOLVE_TARGET = re.compile(r"^Failed to resolve '(?P<address>[^']*)'")
_BRACKETS = re.compile(r"\[[^\]]*\]:?\s*")
_BROKER_NAME = re.compile(r"\b[a-z_]+://([^\s/]+)/(?:bootstrap|\d+)")
_AFTER = re.compile(r" \(after \d+ ?ms in state \w+[^)]*\)")
_NUMBER = re.compile(r"(?<![\w.:#-])\d+(?![\w.:])")


@dataclass(frozen=True)
class Line:
    """One line to log."""

    level: int
    """A `logging` level."""
    text: str


def unreachable_broker(text: str) -> tuple[str, str] | None:
    """(broker address, reason) when `text` says a connection to a broker could not be made, else None."""
    found = _UNREACHABLE.search(text)
    if found is None:
        return None
    # The address connected to (or resolved), not the name in front: a coordinator's error event says
    # `GroupCoordinator: Connect to ipv4#127.0.0.1:19092 failed: ...`; the broker is one, whichever role saw it.
    reason = found["reason"]
    target = _CONNECT_TARGET.match(reason)
    if target is not None:
        return target["address"], reason[target.end():]
    target = _RESOLVE_TARGET.match(reason)
    return (target["address"] if target is not None else found["broker"]), reason


def repeat_key(text: str) -> str:
    """What stays the same when librdkafka says the same thing again: without the client and thread names, the
    broker's protocol and id, the time spent in a state, and counts (`1/1 brokers are down`)."""
    text = _BRACKETS.sub("", text)
    text = _BROKER_NAME.sub(r"\1", text)
    text = _AFTER.sub("", text)
    return _NUMBER.sub("#", text)


def span(seconds: float) -> str:
    """A duration for a person: `45 s`, `12 min`, `3 h 5 min`."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@dataclass
class _Outage:
    """One broker that could not be reached: a suspect until a probe fails too (`said`)."""

    since: float
    reason: str
    probe_at: float
    said_at: float = 0.0
    gap: float = 0.0
    said: bool = False
    failures: int = 1


@dataclass
class _Repeats:
    """One line shown at `shown_at`, and how often it came again since."""

    shown_at: float
    level: int
    text: str
    count: int = 0


class KafkaLogPolicy:
    """Decides which of librdkafka's lines to log (see the module docstring). Not thread-safe: one caller."""

    def __init__(self, summary_s: float = SUMMARY_S, summary_max_s: float = SUMMARY_MAX_S,
                 repeat_window_s: float = REPEAT_WINDOW_S, probe_s: float = PROBE_S,
                 probe_later_s: float = PROBE_LATER_S) -> None:
        self.summary_s, self.summary_max_s, self.repeat_window_s = summary_s, summary_max_s, repeat_window_s
        self.probe_s, self.probe_later_s = probe_s, probe_later_s
        self._outages: dict[str, _Outage] = {}
        self._repeats: dict[str, _Repeats] = {}

    @property
    def idle(self) -> bool:
        """Nothing open: `tick` and `due_probes` have nothing until the next `observe`."""
        return not self._outages and not self._repeats

    def observe(self, level: int, text: str, now: float) -> list[Line]:
        """The lines to log now that librdkafka said `text` at `level`."""
        unreachable = unreachable_broker(text)
        if unreachable is not None:
            broker, reason = unreachable
            outage = self._outages.get(broker)
            if outage is None:
                self._outages[broker] = _Outage(since=now, reason=reason, probe_at=now)
            else:
                outage.reason, outage.failures = reason, outage.failures + 1
            return []
        if self._outages and _BROKERS_DOWN.search(text):
            return []  # what the outage's lines say already
        key = repeat_key(text)
        seen = self._repeats.get(key)
        if seen is not None and now - seen.shown_at < self.repeat_window_s:
            seen.count += 1
            seen.level, seen.text = max(seen.level, level), text
            return []
        lines = self._repeated(key, now, force=True)
        self._repeats[key] = _Repeats(now, level, text)
        return [*lines, Line(level, text)]

    def due_probes(self, now: float) -> list[str]:
        """The brokers to probe now (host:port, as librdkafka names them)."""
        return [broker for broker, outage in self._outages.items() if outage.probe_at <= now]

    def probed(self, broker: str, reachable: bool, now: float) -> list[Line]:
        """The lines to log now that a probe of `broker` found it `reachable` or not."""
        outage = self._outages.get(broker)
        if outage is None:
            return []
        if reachable:
            del self._outages[broker]
            if not outage.said:
                return []
            return [Line(logging.INFO, f"Kafka broker {broker} reachable again after {span(now - outage.since)} "
                                       f"({outage.failures} failed connection attempt(s) meanwhile)")]
        outage.probe_at = now + (self.probe_s if now - outage.since < 60 else self.probe_later_s)
        if not outage.said:
            outage.said, outage.said_at, outage.gap = True, now, self.summary_s
            return [Line(logging.WARNING, f"Kafka broker {broker} unreachable ({outage.reason}); retrying (a "
                                          f"summary every while as long as it lasts)")]
        if now - outage.said_at < outage.gap:
            return []
        outage.said_at, outage.gap = now, min(2 * outage.gap, self.summary_max_s)
        return [Line(logging.WARNING, f"Kafka broker {broker} unreachable for {span(now - outage.since)} "
                                      f"({outage.failures} failed connection attempt(s), the last: {outage.reason}); "
                                      f"still retrying")]

    def tick(self, now: float) -> list[Line]:
        """The lines the passing of time calls for: counts of repeated lines whose window is over."""
        lines: list[Line] = []
        for key in list(self._repeats):
            lines += self._repeated(key, now)
        return lines

    def _repeated(self, key: str, now: float, force: bool = False) -> list[Line]:
        seen = self._repeats.get(key)
        if seen is None or (not force and now - seen.shown_at < self.repeat_window_s):
            return []
        del self._repeats[key]
        if not seen.count:
            return []
        return [Line(seen.level, f"{seen.text} (said {seen.count} more time(s) in the last "
                                 f"{span(now - seen.shown_at)})")]
