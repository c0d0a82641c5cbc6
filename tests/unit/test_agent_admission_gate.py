"""The wait-queue gate in the agent's admission: asked last, after the host's other checks; a refusal gives the
host token back."""

from __future__ import annotations

from pathlib import Path

from scalebox_stream.agent.admission import Admission
from scalebox_stream.events import EventStamp
from scalebox_stream.spec.model import ModuleSpec


def _task():
    return EventStamp("a", producer="test").task_created("t1", "m", "b", {}, "sbx.tasks.a.m")


def test_the_gate_is_asked_after_the_host_token_and_a_refusal_releases_it(tmp_path: Path) -> None:
    module = ModuleSpec(name="m", command=["/bin/true"], max_tasks_per_host=1, wait_semaphore="s")
    answers = ["semaphore 's' is 0", None]
    asked: list[int] = []

    def gate() -> str | None:
        asked.append(1)
        return answers.pop(0)

    admission = Admission(module, {}, tmp_path / "locks", gate=gate)
    assert admission.active
    verdict, token = admission.check(_task())
    assert not verdict.admitted and token is None and "wait_semaphore s: semaphore 's' is 0" in verdict.reason
    verdict, token = admission.check(_task())
    assert verdict.admitted and token is not None, "the token was given back by the refusal"
    assert len(asked) == 2
    admission.release(token)


def test_without_a_gate_nothing_waits(tmp_path: Path) -> None:
    admission = Admission(ModuleSpec(name="m", command=["/bin/true"]), {}, tmp_path / "locks")
    assert not admission.active
