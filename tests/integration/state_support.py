"""Helpers for the shared-state tests: private state topics, owner processes to start and kill, the changelog."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pipeline import REPO

from scalebox_stream.kafka.config import consumer_config
from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import OK, SEMAPHORE, Item, Key, StateTopics, decode_key

CLIENTS, CALLS = 8, 2000


def private_topics(kafka: str, prefix: str = "sbx.test.state") -> StateTopics:
    """State topics of the test's own (deleted when the test session ends)."""
    topics = StateTopics(f"{prefix}.{uuid.uuid4().hex[:8]}")
    topics.ensure(kafka)
    return topics


class OwnerProcess:
    """`scalebox state-owner` in a child process, on private topics."""

    def __init__(self, kafka: str, topics: StateTopics, owner_id: str, log_dir: Path) -> None:
        self.kafka, self.topics, self.owner_id, self.log_dir = kafka, topics, owner_id, log_dir
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.log_dir / f"owner-{self.owner_id}-{self.starts}.log"

    def start(self, timeout_s: float = 60.0) -> OwnerProcess:
        """Start it and wait until it was assigned its partitions (restored from the changelog)."""
        self.starts += 1
        env = {**os.environ, "SCALEBOX_KAFKA": self.kafka, "SCALEBOX_STATE_PREFIX": self.topics.prefix}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scalebox_stream.cli.main", "state-owner", "--owner-id", self.owner_id, "-v"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout_s
        while "assigned partitions" not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, f"owner exited:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"owner not assigned in {timeout_s} s:\n{self.log.read_text()}"
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, an open transaction left behind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def read_all(kafka: str, topic: str, partitions: int) -> list:
    """Every committed record of a topic, partition by partition."""
    consumer = Consumer(consumer_config(kafka, f"sbx.test.reader.{uuid.uuid4().hex[:8]}",
                                        **{"enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    records, ended, deadline = [], set(), time.monotonic() + 60
    while len(ended) < partitions and time.monotonic() < deadline:
        for m in consumer.consume(1000, timeout=0.5):
            if m.error() is None:
                records.append(m)
            elif m.error().code() == KafkaError._PARTITION_EOF:
                ended.add(m.partition())
    consumer.close()
    assert len(ended) == partitions, f"{topic} not read to its end"
    return records


def changelog_state(kafka: str, topics: StateTopics) -> dict[Key, Item]:
    """The state the changelog holds: each key's latest value, folded from the first record (a tombstone: gone)."""
    state: dict[Key, Item] = {}
    for m in read_all(kafka, topics.changelog, topics.partitions):
        if m.value() is None:
            state.pop(decode_key(m.key()), None)
        else:
            state[decode_key(m.key())] = Item.from_json(m.value())
    return state


def settled_item(kafka: str, topics: StateTopics, key: Key, version: int, timeout_s: float = 90.0) -> Item | None:
    """The key's item on the changelog once it reached `version` (an owner commits what it answered within its
    commit interval, later after a failed commit), or what the changelog holds after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        item = changelog_state(kafka, topics).get(key)
        if (item is not None and item.version >= version) or time.monotonic() > deadline:
            return item
        time.sleep(0.2)


def replies_by_id(kafka: str, topics: StateTopics) -> dict[str, list[dict]]:
    """Every reply on the replies topic, grouped by request id."""
    grouped: dict[str, list[dict]] = {}
    for m in read_all(kafka, topics.replies, topics.reply_partitions):
        reply = json.loads(m.value())
        grouped.setdefault(reply["id"], []).append(reply)
    return grouped


def commit_end_offsets(kafka: str, topics: StateTopics, group: str) -> None:
    """Make a new owner group start after every command already applied (it restores values from the changelog)."""
    consumer = Consumer(consumer_config(kafka, group))
    ends = []
    for p in range(topics.partitions):
        _, high = consumer.get_watermark_offsets(TopicPartition(topics.commands, p), timeout=30, cached=False)
        ends.append(TopicPartition(topics.commands, p, high))
    consumer.commit(offsets=ends, asynchronous=False)
    consumer.close()


def hammer(kafka: str, topics: StateTopics, app: str, name: str, progress: list[int],
           timeout_s: float = 120, calls: int = CALLS) -> list[list[tuple[int, int]]]:
    """`calls` increment-n calls from CLIENTS concurrent clients (`progress[0]` counts the answered ones); each
    client's (n, new value) pairs."""
    results: list[list[tuple[int, int]]] = [[] for _ in range(CLIENTS)]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            with StateClient(kafka, topics, timeout_s=timeout_s, resend_s=5) as client:
                for j in range(calls // CLIENTS):
                    n = 1 + (i + j) % 3
                    reply = client.call(client.command("add", SEMAPHORE, app, name, n=n, auto_create=True))
                    assert reply.code == OK, reply
                    results[i].append((n, reply.value))
                    with lock:
                        progress[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[0]
    return results


def assert_exact(kafka: str, topics: StateTopics, app: str, name: str, results: list[list[tuple[int, int]]],
                 calls: int = CALLS) -> None:
    pairs = [p for r in results for p in r]
    assert len(pairs) == calls
    total = sum(n for n, _ in pairs)
    values = [v for _, v in pairs]
    assert len(set(values)) == calls, "two requests were answered with the same new value"
    assert max(values) == total
    with StateClient(kafka, topics) as client:
        assert client.call(client.command("get", SEMAPHORE, app, name)).value == total
    item = settled_item(kafka, topics, (SEMAPHORE, app, name), calls)
    assert item is not None and (item.value, item.version) == (total, calls), \
        "each request changed the semaphore exactly once"
