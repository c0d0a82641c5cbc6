"""Synthetic but realistic event streams (task lifecycles with retries and children), for benchmarks and tests."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from scalebox_stream.events import Event, EventCodec, child_task_id
from scalebox_stream.kafka.config import admin_config, producer_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC_PARTITIONS, ensure_topics, task_topic

STDOUT_LINE = "processed block {n:08d}: checksum ok, 4096 records scanned, 0 rejected; elapsed {ms} ms\n"


class _Clock:
    """A µs clock that only moves forward (deterministic with a seed)."""

    def __init__(self, rng: random.Random, start_us: int = 1_700_000_000_000_000) -> None:
        self.rng, self.now = rng, start_us

    def tick(self, max_us: int = 2000) -> int:
        self.now += self.rng.randint(1, max_us)
        return self.now


def _stdout(rng: random.Random) -> str:
    text = STDOUT_LINE.format(n=rng.randrange(10**8), ms=rng.randrange(10**4))
    return (text * 3)[:200]


def _event(app: str, kind: str, task_id: str, module: str, attempt: int, at: int, payload: dict,
           host: str = "node-1", rng: random.Random | None = None) -> Event:
    eid = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng else str(uuid.uuid4())
    return Event(kind, app, payload, module=module, task_id=task_id, attempt=attempt, cluster="local", host=host,
                 producer=f"{host}/{module}", event_id=eid, occurred_at=at)


def lifecycle(app: str, module: str, task_id: str, body: str, parent: str | None, children: list[str],
              fail_attempts: int, max_attempts: int, clock: _Clock, rng: random.Random) -> tuple[list[Event], list]:
    """The events of one task (created ... terminal); returns (events, the TaskCreated events of its children)."""
    host = f"node-{rng.randint(1, 4)}"
    agent = f"{host}/{module}/{rng.randint(1000, 9999)}"
    created = _event(app, "TaskCreated", task_id, module, 1, clock.tick(), {
        "body": body, "headers": {"from_module": "gen"} if parent else {}, "parent_task_id": parent,
        "not_before": None, "topic": task_topic(app, module)}, rng=rng)
    out, child_events = [created], []
    attempt = 1
    while True:
        slot = rng.randint(0, 3)
        out.append(_event(app, "TaskAccepted", task_id, module, attempt, clock.tick(), {
            "agent": agent, "slot": slot, "topic": task_topic(app, module), "partition": 0,
            "offset": rng.randrange(10**6)}, host, rng))
        started = clock.tick()
        out.append(_event(app, "TaskStarted", task_id, module, attempt, started, {
            "agent": agent, "slot": slot, "executor": "process", "image": None, "container_id": None,
            "started_at": started}, host, rng))
        ok = attempt > fail_attempts
        emitted = children if ok else []
        finished = clock.tick(20000)
        out.append(_event(app, "TaskFinished", task_id, module, attempt, clock.tick(), {
            "agent": agent, "slot": slot, "executor": "process", "image": None, "container_id": None,
            "outcome": "succeeded" if ok else "failed", "exit_code": 0 if ok else 1, "signal": None,
            "timed_out": False, "error": None, "stdout": _stdout(rng), "stderr": "" if ok else "bad input\n",
            "custom_out": str(rng.randrange(1000)), "message_text": None, "stdout_bytes": 200, "stderr_bytes": 0,
            "status_code": None, "input_bytes": rng.randrange(10**6), "output_bytes": rng.randrange(10**6),
            "read_bytes": rng.randrange(10**7), "write_bytes": rng.randrange(10**7),
            "cpu_user_s": rng.random(), "cpu_system_s": rng.random() / 10,
            "peak_memory_bytes": rng.randrange(10**8), "started_at": started, "finished_at": finished,
            "user_timestamps": [{"at": started + 5, "label": "begin"}, {"at": finished - 5, "label": None}],
            "emitted_task_ids": emitted, "emitted_modules": ["calc"] * len(emitted)}, host, rng))
        if ok:
            for position, child in enumerate(emitted):
                child_events.append((child, f"{body}/{position}", task_id))
            out.append(_event(app, "TaskSucceeded", task_id, module, attempt, clock.tick(),
                              {"attempts": attempt}, host, rng))
            return out, child_events
        if attempt >= max_attempts:
            out.append(_event(app, "TaskFailed", task_id, module, attempt, clock.tick(),
                              {"attempts": attempt, "reason": "failed: exit code 1"}, host, rng))
            return out, child_events
        out.append(_event(app, "TaskRetryScheduled", task_id, module, attempt, clock.tick(),
                          {"rule": "1:2", "delay_s": 0.0, "next_attempt": attempt + 1}, host, rng))
        attempt += 1


def generate(n_events: int, app: str = "bench", seed: int = 7, children: int = 4) -> Iterator[Event]:
    """About `n_events` events: root tasks (module router) with `children` calc tasks each; 10% of the
    tasks fail once and retry, 2% fail for good. Events of one task are in order; tasks interleave."""
    rng = random.Random(seed)
    clock = _Clock(rng)
    yield _event(app, "AppDeployed", "", "", 0, clock.tick(), {
        "modules": ["router", "calc"], "spec_yaml": f"name: {app}\n", "source": "/apps/app.yaml"}, rng=rng)
    emitted = 1
    root = 0
    while emitted < n_events:
        root_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kids = [child_task_id(root_id, i) for i in range(children)]
        events, child_specs = lifecycle(app, "router", root_id, str(root), None, kids, 0, 1, clock, rng)
        batch = list(events)
        for child, body, parent in child_specs:
            roll = rng.random()
            fails = 2 if roll < 0.02 else 1 if roll < 0.12 else 0
            more, _ = lifecycle(app, "calc", child, body, parent, [], fails, 2, clock, rng)
            batch.extend(more)
        yield from batch
        emitted += len(batch)
        root += 1
    yield _event(app, "AppFinished", "", "", 0, clock.tick(), {"succeeded": root, "failed": 0}, rng=rng)


def produce(bootstrap: str, topic: str, events: list[Event] | Iterator[Event],
            partitions: int = EVENTS_TOPIC_PARTITIONS) -> int:
    """Create `topic` and write the events to it, keyed like the agents do (task id, else app); returns the count."""
    ensure_topics(AdminClient(admin_config(bootstrap)), {topic: partitions})
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 20, "batch.num.messages": 10000}))
    codec = EventCodec()
    count = 0
    for e in events:
        key = e.task_id or e.app
        while True:
            try:
                producer.produce(topic, key=key, value=codec.encode(e))
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError(f"could not write every event to {topic}")
    return count
