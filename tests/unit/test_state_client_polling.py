"""The state client's callers read their replies themselves, over a fake Kafka edge: one caller at a time polls
the reply consumer and hands the others their replies; when its own are read it passes the polling on; replies to
other clients are skipped; an unanswered command is sent again with the same id until the timeout."""

from __future__ import annotations

import queue
import random
import threading
import time
from types import SimpleNamespace

import pytest
from fakes.kafka import FakeMessage

from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import OK, SEMAPHORE, Command, Reply, StateTopics

TOPICS = StateTopics("sbx.unit.state.client")


def reply_message(request_id: str, value: bytes) -> FakeMessage:
    """A consumed reply keyed by its request id."""
    return FakeMessage("replies", 0, 0, value, request_id.encode())


class FakeProducer:
    """Hands what the client produces to its edge."""

    def __init__(self, edge: FakeEdge) -> None:
        self.edge = edge

    def produce(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        cmd = Command.from_json(value)
        self.edge.sent.append(cmd)
        self.edge.commands.put(cmd)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


class FakeEdge:
    """The client's consumer, and what its producer sent: the commands produced and the replies queued for the
    consumer. Counts how many threads are inside `poll` at once."""

    def __init__(self) -> None:
        self.commands: queue.Queue[Command] = queue.Queue()
        self.sent: list[Command] = []
        self.replies: queue.Queue[FakeMessage] = queue.Queue()
        self.polling = self.most_polling = 0
        self.lock = threading.Lock()

    def list_topics(self, timeout: float = 0) -> SimpleNamespace:
        topic = SimpleNamespace(error=None, partitions={p: None for p in range(3)})
        return SimpleNamespace(topics={TOPICS.commands: topic, TOPICS.replies: topic})

    def get_watermark_offsets(self, tp: object, timeout: float = 0, cached: bool = False) -> tuple[int, int]:
        return 0, 0

    def assign(self, partitions: list) -> None:
        pass

    def poll(self, timeout: float = 0) -> FakeMessage | None:
        with self.lock:
            self.polling += 1
            self.most_polling = max(self.most_polling, self.polling)
        try:
            return self.replies.get(timeout=timeout) if timeout else self.replies.get_nowait()
        except queue.Empty:
            return None
        finally:
            with self.lock:
                self.polling -= 1

    def consume(self, n: int, timeout: float = 0) -> list[FakeMessage]:
        out = []
        while len(out) < n:
            try:
                out.append(self.replies.get_nowait())
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        pass

    def answer(self, cmd: Command, value: int) -> None:
        self.replies.put(reply_message(cmd.id, Reply(cmd.id, OK, value).to_json()))


def client(edge: FakeEdge, **kwargs: float) -> StateClient:
    return StateClient("unused:9092", TOPICS, producer=FakeProducer(edge), consumer=edge, **kwargs)


def test_concurrent_callers_each_get_their_own_reply_and_one_polls_at_a_time() -> None:
    edge, rng = FakeEdge(), random.Random(7)
    c = client(edge, timeout_s=10)
    stop = threading.Event()

    def owner() -> None:  # answers what came, shuffled, with replies to another client in between
        while not stop.is_set():
            batch = []
            try:
                batch.append(edge.commands.get(timeout=0.01))
                while True:
                    batch.append(edge.commands.get_nowait())
            except queue.Empty:
                pass
            rng.shuffle(batch)
            for cmd in batch:
                edge.replies.put(reply_message("someone-else-1", Reply("someone-else-1", OK, -1).to_json()))
                edge.answer(cmd, cmd.n * 1000 + int(cmd.id.rsplit("-", 1)[1]))

    results: dict[int, list[tuple[int, int]]] = {}

    def caller(i: int) -> None:
        got = []
        for _ in range(30):
            cmd = c.command("add", SEMAPHORE, "app", f"s{i}", n=i)
            got.append((int(cmd.id.rsplit("-", 1)[1]) + i * 1000, c.call(cmd).value))
        results[i] = got

    responder = threading.Thread(target=owner, daemon=True)
    responder.start()
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    stop.set()
    assert sorted(results) == list(range(6))
    for got in results.values():
        assert [value for _, value in got] == [expected for expected, _ in got]
    assert edge.most_polling == 1
    assert len(edge.sent) == 6 * 30  # nothing sent twice


def test_the_polling_passes_on_when_the_pollers_reply_came() -> None:
    edge = FakeEdge()
    c = client(edge, timeout_s=5)
    first, second = c.command("get", SEMAPHORE, "app", "a"), c.command("get", SEMAPHORE, "app", "b")
    answers: dict[str, object] = {}
    a = threading.Thread(target=lambda: answers.update(a=c.call(first).value))
    b = threading.Thread(target=lambda: answers.update(b=c.call(second).value))
    a.start()
    b.start()
    edge.commands.get(timeout=2), edge.commands.get(timeout=2)
    edge.answer(first, 1)  # whoever polls: the first call ends; the second's thread must poll now
    a.join(2)
    time.sleep(0.2)
    edge.answer(second, 2)
    b.join(2)
    assert answers == {"a": 1, "b": 2}


def test_an_unanswered_command_is_sent_again_with_its_id_until_the_timeout() -> None:
    edge = FakeEdge()
    c = client(edge, timeout_s=0.5, resend_s=0.1)
    cmd = c.command("add", SEMAPHORE, "app", "x", n=1)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no reply to add semaphore 'x'"):
        c.call(cmd)
    assert 0.5 <= time.monotonic() - started < 2
    assert len(edge.sent) >= 4 and {s.id for s in edge.sent} == {cmd.id}


def test_a_malformed_reply_is_raised_to_its_caller() -> None:
    edge = FakeEdge()
    c = client(edge, timeout_s=2)
    cmd = c.command("get", SEMAPHORE, "app", "x")
    edge.replies.put(reply_message(cmd.id, b"not json"))
    with pytest.raises(ValueError):
        c.call(cmd)



def test_a_caller_that_gives_up_passes_the_polling_on() -> None:
    edge = FakeEdge()
    c = client(edge, timeout_s=0.3)
    answers: dict[str, object] = {}

    def impatient() -> None:
        try:
            c.call(c.command("get", SEMAPHORE, "app", "a"))
        except TimeoutError:
            answers["a"] = "timeout"

    a = threading.Thread(target=impatient)
    a.start()
    edge.commands.get(timeout=2)
    c.timeout_s = 5.0  # the next call's
    patient = c.command("get", SEMAPHORE, "app", "b")
    b = threading.Thread(target=lambda: answers.update(b=c.call(patient).value))
    b.start()
    edge.commands.get(timeout=2)
    a.join(2)  # timed out while polling (or asked to): it leaves, and the polling passes on
    edge.answer(patient, 2)
    b.join(1)  # well before its first resend (5 s)
    assert answers == {"a": "timeout", "b": 2}
