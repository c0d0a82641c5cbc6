"""Answers read before the commit are never contradicted: the owner answers each command as soon as it applied it
and commits later; it is SIGKILLed twice with answered commands not committed yet, and the answers read stand:
every `increment-n NAME 1` was answered with its own new value, together exactly 1..N, and the semaphore ends at N.

The owner commits once a second here (`SCALEBOX_STATE_COMMIT_MS`), so each kill leaves many answered commands
uncommitted; the test checks that its successor applied and answered some of them again, the same."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from state_support import OwnerProcess, changelog_state, private_topics, read_all

from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import OK, SEMAPHORE, StateTopics

CALLERS, CALLS = 8, 1200


def _call(kafka: str, topics: StateTopics, app: str, values: list[int], progress: list[int],
          errors: list[BaseException]) -> None:
    try:
        with StateClient(kafka, topics, timeout_s=60) as client:
            for _ in range(CALLS // CALLERS):
                reply = client.call(client.command("add", SEMAPHORE, app, "hits", n=1, auto_create=True))
                assert reply.code == OK, reply
                values.append(reply.value)
                progress[0] += 1
    except BaseException as exc:
        errors.append(exc)


def _answers(kafka: str, topics: StateTopics) -> dict[str, list]:
    """Every answer sent, per request id, in the order sent."""
    answers: dict[str, list] = {}
    for m in read_all(kafka, topics.replies, topics.reply_partitions):
        reply = json.loads(m.value())
        answers.setdefault(reply["id"], []).append((reply["code"], reply["value"]))
    return answers


def test_answers_read_before_the_commit_stand_when_the_owner_is_killed(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEBOX_STATE_COMMIT_MS", "1000")  # the owner process inherits it
    kafka, topics, app = kafka_bootstrap, private_topics(kafka_bootstrap), f"t{uuid.uuid4().hex[:6]}"
    owner = OwnerProcess(kafka, topics, "o1", tmp_path).start()
    values: list[int] = []
    progress, errors = [0], []
    callers = [threading.Thread(target=_call, args=(kafka, topics, app, values, progress, errors))
               for _ in range(CALLERS)]
    try:
        for t in callers:
            t.start()
        for at in (CALLS // 3, 2 * CALLS // 3):
            deadline = time.monotonic() + 60
            while progress[0] < at and not errors and time.monotonic() < deadline:
                time.sleep(0.002)
            assert progress[0] < CALLS, "the calls ended before the owner could be killed"
            owner.kill()
            owner.start()
        for t in callers:
            t.join(120)
        assert not errors, errors[0]
        assert sorted(values) == list(range(1, CALLS + 1)), "each call its own new value, together 1..N"
        with StateClient(kafka, topics) as client:
            get = client.command("get", SEMAPHORE, app, "hits")
            assert client.call(get).value == CALLS
        assert owner.stop() == 0, "stopped, its open transaction committed"
        item = changelog_state(kafka, topics)[(SEMAPHORE, app, "hits")]
        assert (item.value, item.version) == (CALLS, CALLS), "each call changed it exactly once"
        answers = _answers(kafka, topics)
        answers.pop(get.id)
        assert len(answers) == CALLS and all(len(set(a)) == 1 for a in answers.values()), \
            "every request answered the same each time it was applied"
        assert any(len(a) > 1 for a in answers.values()), \
            "no answered command was applied again after a kill: the test proved nothing"
    finally:
        owner.stop()
