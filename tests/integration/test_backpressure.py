"""Backpressure: a fast producer and a slow consumer keep the slow module's backlog bounded."""

from __future__ import annotations

import threading
import time
import uuid

from cluster import Cluster
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from scalebox_stream.kafka.config import secured
from scalebox_stream.kafka.topics import module_group, task_topic

BOUND = 5
FAST_SLOTS = 2


class TrueBacklog:
    """Counts the task records (not offsets: transaction markers take offsets too) past the group's commits."""

    def __init__(self, bootstrap: str, app: str, module: str) -> None:
        self.admin = AdminClient(secured({"bootstrap.servers": bootstrap}))
        self.group, self.topic = module_group(app, module), task_topic(app, module)
        self.consumer = Consumer(secured({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}",
                                          "enable.auto.commit": False, "enable.partition.eof": True,
                                          "isolation.level": "read_committed"}))

    def count(self) -> int:
        partitions = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        future = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(self.group)])
        committed = {tp.partition: tp.offset for tp in next(iter(future.values())).result().topic_partitions
                     if tp.topic == self.topic}
        assignment = [TopicPartition(self.topic, p, max(committed.get(p, 0), 0)) for p in partitions]
        self.consumer.assign(assignment)
        pending, records = {tp.partition for tp in assignment}, 0
        while pending:
            message = self.consumer.poll(5)
            if message is None:
                break
            if message.error() is None:
                records += 1
            elif message.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(message.partition())
        return records

    def close(self) -> None:
        self.consumer.close()


def test_slow_module_backlog_stays_within_one_batch_of_its_bound(tmp_path, kafka_bootstrap, pg_dsn):
    app = f"backpressure-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app.yaml").write_text(
        f"name: {app}\nmodules:\n"
        "  fast:\n    command: [/bin/sh, -c, 'echo \"$1\" > \"$WORK_DIR/sink-tasks.txt\"', sh]\n"
        f"    sink_modules: [slow]\n    slots: {FAST_SLOTS}\n"
        f"  slow:\n    command: [/bin/sh, -c, 'sleep 0.3']\n    max_backlog: {BOUND}\n")
    c = Cluster(tmp_path / "app.yaml", kafka_bootstrap, pg_dsn, tmp_path / "logs")
    probe = TrueBacklog(kafka_bootstrap, app, "slow")
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(probe.count())
            time.sleep(0.05)

    try:
        c.start_projector()
        c.start_agent("fast", FAST_SLOTS)
        c.start_agent("slow", 1)
        roots = c.send("fast", [f"t{i}" for i in range(40)])
        sampler = threading.Thread(target=sample)
        sampler.start()
        state = c.wait(roots, timeout_s=180)
        done.set()
        sampler.join()
        counts = {m["module"]: (m["succeeded"], m["failed"]) for m in state.modules}
        assert counts == {"fast": (40, 0), "slow": (40, 0)}, "nothing is dropped"
        print(f"slow backlog: max {max(samples)} over {len(samples)} samples (bound {BOUND})")
        assert max(samples) <= BOUND + FAST_SLOTS, samples
        assert max(samples) >= BOUND - 1, "the test never loaded the slow module"
    finally:
        done.set()
        probe.close()
        c.close()
