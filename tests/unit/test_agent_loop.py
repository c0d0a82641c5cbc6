"""The whole agent, its Kafka clients handed in as in-memory fakes: tasks run as real processes, and their
reports, the agent's lifecycle and the positions land in the fake broker's transactions."""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import replace

from confluent_kafka import KafkaError
from fakes.agent import CODEC, TOPIC, created
from fakes.kafka import FakeBroker

from scalebox_stream.agent.clients import AgentClients
from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.loop import Agent, AgentOptions
from scalebox_stream.agent.settings import AgentSettings
from scalebox_stream.kafka.topics import DEAD_LETTER_TOPIC, EVENTS_TOPIC, PRESENCE_TOPIC
from scalebox_stream.spec.loader import load_app

P0 = (TOPIC, 0)


class _Quiet:
    """Commands, downstream backlog, host directory and backlog monitor that have nothing to say."""

    def __init__(self) -> None:
        self.closed = False

    def poll(self) -> list:
        return []

    def over_bound(self) -> None:
        return None

    def note_started(self) -> None:
        return None

    def backlog(self, app: str, module: str) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


def _clients(broker: FakeBroker, made: list[str]) -> AgentClients:
    from scalebox_stream.kafka.transactions import TransactionalPublisher

    def publisher(stop: threading.Event) -> TransactionalPublisher:
        return TransactionalPublisher("fake:9092", "sbx-agent-x", producer_factory=broker.producer, stop=stop)

    return AgentClients(consumer=broker.consumer, publisher=publisher, commands=_Quiet,
                        downstream=lambda bounds: _Quiet(), backlog=_Quiet, directory=_Quiet,
                        prepare_topics=made.append)


def _events(broker: FakeBroker) -> list:
    return [CODEC.decode(r[2]) for t in broker.transactions for r in t.on(EVENTS_TOPIC)]


TRUE_APP = "name: app\nmodules:\n  m:\n    command: [/bin/true]\n    executor: process\n    slots: 2\n"


def _run(tmp_path, broker: FakeBroker, until_committed: int, app_text: str = TRUE_APP,
         slots: int = 2) -> tuple[Agent, list[str]]:
    """Run an agent of module m (/bin/true, two slots, unless `app_text` and `slots` say otherwise) until
    `until_committed` is committed on P0."""
    app = tmp_path / "app.yaml"
    app.write_text(app_text)
    made: list[str] = []
    identity = AgentIdentity("app", "m", host="h1", cluster="c1", agent_id="agent-x")
    agent = Agent(load_app(app), identity, "fake:9092", AgentOptions(
        slots=slots, work_root=tmp_path / "work", settings=AgentSettings(presence_s=0.05)),
        clients=_clients(broker, made))
    agent.consumer.assign(P0, now=False)  # handed over inside the agent's first poll

    def stop_when_done() -> None:
        deadline = time.monotonic() + 20
        while broker.committed.get(P0, (0, ""))[0] < until_committed and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # a presence renewal or two
        agent.request_stop()

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    interval = sys.getswitchinterval()
    try:
        driver = threading.Thread(target=stop_when_done)
        driver.start()
        agent.run()
        driver.join()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        sys.setswitchinterval(interval)
    return agent, made


def test_an_agent_with_fake_clients_runs_tasks_and_commits_them(tmp_path):
    broker = FakeBroker()
    tasks = [created() for _ in range(6)]
    for event in tasks:
        broker.append(TOPIC, 0, CODEC.encode(event), key=event.task_id)
    broker.append(TOPIC, 0, b"not a task")
    agent, made = _run(tmp_path, broker, len(tasks) + 1)
    assert made == [agent.topics[1]]
    assert broker.committed[P0] == (len(tasks) + 1, "")
    events = _events(broker)
    finished = {e.task_id: e.payload["outcome"] for e in events if e.event_type == "TaskFinished"}
    assert finished == {t.task_id: "succeeded" for t in tasks}
    lifecycle = [e.payload["state"] for e in events if e.event_type == "AgentLifecycle"]
    assert lifecycle[0] == "started" and lifecycle[-1] == "stopped"
    presence = [r for t in broker.transactions for r in t.on(PRESENCE_TOPIC)]
    assert len(presence) >= 3  # started, renewed, stopped
    (poison,) = [r for t in broker.transactions for r in t.on(DEAD_LETTER_TOPIC)]
    assert poison[2] == b"not a task" and dict(poison[3])["source_offset"] == str(len(tasks)).encode()
    assert agent.dispatcher.in_flight == 0 and agent.consumer.closed and agent.assignments == 1
    assert agent.intake.poison_count == 1


def test_attempts_a_dead_agent_was_running_are_recorded_lost_then_run_again_or_failed(tmp_path):
    """The lease says offset 0 ran attempt 1 and offset 1 attempt 3 when their agent died; offset 2 finished."""
    broker = FakeBroker()
    tasks = [created() for _ in range(3)]
    for event in tasks:
        broker.append(TOPIC, 0, CODEC.encode(event), key=event.task_id)
    broker.committed[P0] = (0, "sbx2:2;0@1,1@3")
    _run(tmp_path, broker, 3)
    assert broker.committed[P0] == (3, "")
    runs = sorted((e.task_id == tasks[1].task_id, e.attempt, e.payload["outcome"])
                  for e in _events(broker) if e.event_type == "TaskFinished")
    assert runs == [(False, 1, "lost"), (False, 2, "succeeded"), (True, 3, "lost")]
    (failed,) = [e for e in _events(broker) if e.event_type == "TaskFailed"]
    assert failed.task_id == tasks[1].task_id and "lost 3 times" in failed.payload["reason"]


def test_invalid_task_records_are_dead_lettered_with_their_fault_and_the_rest_run(tmp_path):
    """A record that decodes but carries a bad id, attempt, time or body never reaches a slot."""
    broker = FakeBroker()
    good = created()
    bad = [replace(created(), task_id="not-a-uuid"), created(attempt=-5), created(not_before=2**62),
           created(body="a\x00b"), replace(created(), module="other")]
    for event in [*bad, good]:
        broker.append(TOPIC, 0, CODEC.encode(event), key=event.task_id)
    agent, _ = _run(tmp_path, broker, len(bad) + 1)
    assert broker.committed[P0][0] == len(bad) + 1
    finished = {e.task_id for e in _events(broker) if e.event_type == "TaskFinished"}
    assert finished == {good.task_id}
    faults = [dict(r[3])["error"].decode() for t in broker.transactions for r in t.on(DEAD_LETTER_TOPIC)]
    assert faults == ["invalid task: task_id 'not-a-uuid' is not a UUID",
                      "invalid task: attempt -5 is outside 1..10000",
                      f"invalid task: not_before {2**62} is not a time within a year from now (µs since the epoch)",
                      "invalid task: the task body contains a NUL byte (at character 1)",
                      "invalid task: module 'other' is not this agent's module 'm'"]
    assert agent.intake.poison_count == len(bad)
    # the three with this agent's own sound ids are ended in the projection; the others change no task
    failed = {e.task_id: e for e in _events(broker) if e.event_type == "TaskFailed"}
    assert set(failed) == {bad[1].task_id, bad[2].task_id, bad[3].task_id}
    assert failed[bad[1].task_id].attempt == 1 and failed[bad[1].task_id].payload["reason"] == faults[1]
    assert failed[bad[3].task_id].payload["reason"] == faults[3]


def test_a_poison_record_kafka_refuses_whole_is_dead_lettered_by_its_head_and_the_rest_run(tmp_path):
    """Its value fit the topic it came from, not the dead-letter topic: the head of it goes there, marked."""
    broker = FakeBroker()
    poison, good = b"\xff" * 70_000, created()
    broker.refused[poison] = KafkaError.MSG_SIZE_TOO_LARGE
    broker.append(TOPIC, 0, poison, key=b"k")
    broker.append(TOPIC, 0, CODEC.encode(good), key=good.task_id)
    _run(tmp_path, broker, 2)
    assert broker.committed[P0][0] == 2
    ((_, _, value, headers),) = [r for t in broker.transactions for r in t.on(DEAD_LETTER_TOPIC)]
    headers = dict(headers)
    assert value == poison[:65536] and headers["error"].startswith(b"not Avro")
    assert headers["truncated"].startswith(f"the report could not be published: a record for {DEAD_LETTER_TOPIC} "
                                           "(70001 bytes) was refused".encode())
    assert {e.task_id for e in _events(broker) if e.event_type == "TaskFinished"} == {good.task_id}


EMIT_APP = """name: app
modules:
  m:
    command: [/bin/sh, -c, 'echo "child of $1" > "$WORK_DIR/sink-tasks.txt"']
    executor: process
    sink_modules: [n]
  n:
    command: [/bin/true]
"""


def test_one_slot_runs_its_buffered_tasks_while_their_reports_wait_and_commits_them_together_exactly_once(tmp_path):
    """One slot, 40 tasks buffered, each emitting a child: the slot goes on to its next task while the reports of
    the ones before wait for a transaction, so transactions carry several reports; and still every task finishes
    once, its child goes in the transaction of its parent's report, and no position ever counts a task whose
    report is not committed with or before it."""
    broker = FakeBroker()
    tasks = [created(body=f"b{i}") for i in range(40)]
    for event in tasks:
        broker.append(TOPIC, 0, CODEC.encode(event), key=event.task_id)
    agent, _ = _run(tmp_path, broker, len(tasks), EMIT_APP, slots=1)
    assert broker.committed[P0] == (len(tasks), "") and agent.dispatcher.in_flight == 0

    reported: set[int] = set()  # offsets whose TaskFinished is committed
    offset_of = {t.task_id: i for i, t in enumerate(tasks)}
    per_transaction = []
    for txn in broker.transactions:
        events = [CODEC.decode(r[2]) for r in txn.on(EVENTS_TOPIC)]
        finished = [e.task_id for e in events if e.event_type == "TaskFinished"]
        children = [CODEC.decode(r[2]) for r in txn.on("sbx.tasks.app.n")]
        assert sorted(c.payload["parent_task_id"] for c in children) == sorted(finished), \
            "each child goes out with its parent's report, and only then"
        reported.update(offset_of[task_id] for task_id in finished)
        if P0 in txn.offsets:
            position = txn.offsets[P0][0]
            assert set(range(position)) <= reported, f"position {position} counts tasks not reported yet"
        per_transaction.append(len(finished))
    finished_all = [e for e in _events(broker) if e.event_type == "TaskFinished"]
    assert sorted(offset_of[e.task_id] for e in finished_all) == list(range(len(tasks))), "each exactly once"
    assert {e.payload["outcome"] for e in finished_all} == {"succeeded"}
    assert max(per_transaction) >= 2, f"reports per transaction: {per_transaction}"
    assert len([n for n in per_transaction if n]) < len(tasks)
