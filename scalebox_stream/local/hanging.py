"""Clearing transactions left hanging on the local broker, with Kafka's own `kafka-transactions` tool.

A broker restart in the middle of a transaction can leave a partition with records of a transaction that
the coordinator already ended (a late write after the abort marker; see KIP-890). Read-committed consumers
then stop at that partition's last stable offset for good. No transaction of this engine stays open longer
than a minute, so one open for longer than `max_minutes` is hanging and is aborted.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from dataclasses import dataclass

from scalebox_stream.local import kafka

log = logging.getLogger(__name__)

TOOL = "org.apache.kafka.tools.TransactionsCommand"
BROKER_ID = "1"


@dataclass(frozen=True)
class Hanging:
    """One hanging transaction on one partition."""

    topic: str
    partition: int
    producer_id: int
    start_offset: int


def connection_args(bootstrap: str) -> list[str]:
    """How Kafka's admin tools reach `bootstrap`: the secured local broker through its internal listener as
    the local admin (`local.secure`), any other as given."""
    info = kafka.running()
    if info is not None and info.bootstrap == bootstrap and info.internal_port is not None:
        from scalebox_stream.local import secure

        return ["--bootstrap-server", f"{kafka.HOST}:{info.internal_port}",
                "--command-config", str(secure.admin_tool_properties())]
    return ["--bootstrap-server", bootstrap]


def _tool(bootstrap: str, *args: str, timeout_s: float = 120) -> str:
    java = kafka.find_java() or "java"
    cmd = [java, "-Xmx256m", "-cp", str(kafka.ensure_tools() / "*"), TOOL, *connection_args(bootstrap), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"kafka-transactions {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def parse_find_hanging(output: str) -> list[Hanging]:
    """Rows of `find-hanging` output (a header line, then one tab-separated row per transaction)."""
    rows = []
    for line in output.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 6 and fields[1].isdigit():
            rows.append(Hanging(fields[0], int(fields[1]), int(fields[2]), int(fields[5])))
    return rows


class AbortIncomplete(RuntimeError):
    """Some hanging transactions could not be aborted; `aborted` holds those that were."""

    def __init__(self, aborted: list[Hanging], failures: list[str]) -> None:
        super().__init__(f"{len(failures)} hanging transaction(s) not aborted: {'; '.join(failures)}")
        self.aborted = aborted


def abort_hanging(bootstrap: str, max_minutes: int = 2) -> list[Hanging]:
    """Abort every transaction open longer than `max_minutes` on the local broker; returns them. One that cannot
    be aborted does not keep the others hanging: each is tried, then `AbortIncomplete` says which failed."""
    found = parse_find_hanging(_tool(bootstrap, "find-hanging", "--broker-id", BROKER_ID,
                                     "--max-transaction-timeout", str(max_minutes)))
    aborted: list[Hanging] = []
    failures: list[str] = []
    for h in found:
        log.warning("aborting a hanging transaction on %s[%d] from offset %d (producer %d)",
                    h.topic, h.partition, h.start_offset, h.producer_id)
        try:
            _tool(bootstrap, "abort", "--topic", h.topic, "--partition", str(h.partition),
                  "--start-offset", str(h.start_offset))
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            failures.append(f"{h.topic}[{h.partition}] from offset {h.start_offset}: {exc}")
            continue
        aborted.append(h)
    if failures:
        raise AbortIncomplete(aborted, failures)
    return aborted


class HangingReaper:
    """Checks the local broker for hanging transactions every `interval_s` in a background thread."""

    def __init__(self, bootstrap: str, interval_s: float = 60.0, max_minutes: int = 2) -> None:
        self.bootstrap, self.interval_s, self.max_minutes = bootstrap, interval_s, max_minutes
        self.aborted: list[Hanging] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hanging-reaper", daemon=True)

    def start(self) -> HangingReaper:
        """Start checking."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.aborted.extend(abort_hanging(self.bootstrap, self.max_minutes))
            except AbortIncomplete as exc:
                self.aborted.extend(exc.aborted)
                log.warning("hanging-transaction check: %s; trying again in %.0f s", exc, self.interval_s)
            except (RuntimeError, OSError, subprocess.TimeoutExpired, kafka.home.LocalServiceError) as exc:
                log.warning("hanging-transaction check failed: %s", exc)

    def stop(self) -> None:
        """Stop checking."""
        self._stop.set()
