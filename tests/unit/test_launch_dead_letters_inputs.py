"""`scalebox run` gives up on dead-lettered events of its app instead of waiting forever; task bodies and headers
from argv and stdin are checked before anything is sent (pure; the dead-letter topic is an in-memory fake)."""

from __future__ import annotations

import pytest

from scalebox_stream.launch.dead_letters import DeadEvent, DeadLetterWatch, stuck_reason
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.launch.inputs import body_lines, parse_header_pairs, tasks_problem

ROOT = "11111111-2222-3333-4444-555555555555"
NUL = DeadEvent("calc", "TaskCreated", ROOT, "unprojectable: DataError: PostgreSQL text fields cannot contain NUL")


def test_a_dead_lettered_start_task_stops_the_run_at_once() -> None:
    assert stuck_reason("calc", [NUL], {ROOT}, unchanged_s=0.0, grace_s=30.0) == (
        "an event of app 'calc' was dead-lettered, so the run cannot finish: TaskCreated of task 11111111 "
        "(unprojectable: DataError: PostgreSQL text fields cannot contain NUL) (see the sbx.dlq topic and the "
        "dead_letters table)")


def test_other_dead_letters_stop_the_run_only_once_it_made_no_progress_for_the_grace() -> None:
    started = DeadEvent("calc", "TaskStarted", "99999999-0000", "unprojectable: x")
    assert stuck_reason("calc", [started], {ROOT}, unchanged_s=29.0, grace_s=30.0) is None
    assert stuck_reason("calc", [started, started], {ROOT}, unchanged_s=30.0, grace_s=30.0) == (
        "2 events of app 'calc' were dead-lettered, so the run cannot finish: TaskStarted of task 99999999 "
        "(unprojectable: x); TaskStarted of task 99999999 (unprojectable: x) (see the sbx.dlq topic and the "
        "dead_letters table)")
    assert stuck_reason("calc", [], {ROOT}, unchanged_s=1e9, grace_s=30.0) is None


class FakeLetters:
    def __init__(self, *batches: list[DeadEvent]) -> None:
        self.batches, self.closed = list(batches), False

    def read(self) -> list[DeadEvent]:
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        self.closed = True


def test_the_watch_keeps_only_its_apps_dead_letters_and_raises_on_a_lost_start_task() -> None:
    other = DeadEvent("other", "TaskCreated", "x", "undecodable: y")
    letters = FakeLetters([other], [NUL])
    watch = DeadLetterWatch("unused:9092", "calc", grace_s=30.0, letters=letters)
    watch.expect([ROOT])
    watch.check((1, []))
    assert watch.dead == []
    with pytest.raises(OperationError, match="TaskCreated of task 11111111"):
        watch.check((1, []))
    watch.close()
    assert letters.closed


def test_an_undecodable_dead_letter_keyed_by_a_start_task_counts() -> None:
    keyed = DeadEvent("", "undecodable record", ROOT, "undecodable: bad magic")
    watch = DeadLetterWatch("unused:9092", "calc", grace_s=0.0, letters=FakeLetters([keyed]))
    watch.expect([ROOT])
    with pytest.raises(OperationError, match="undecodable record of task 11111111"):
        watch.check((1, []))


def test_stdin_lines_split_on_newline_only_keeping_bad_bytes_for_the_check() -> None:
    assert body_lines(b"one\r\ntwo\x0bthree\n\n  \nfour\xe2\x80\xa8five\n") == [
        "one", "two\x0bthree", "four\u2028five"]
    (bad,) = body_lines(b"ab\xff\n")
    assert tasks_problem([bad]) == "the task body is not valid UTF-8 (undecodable byte at character 2)"


def test_tasks_problem_names_the_task_among_several() -> None:
    assert tasks_problem(["fine"], {"k": "v"}) is None
    assert tasks_problem(["fine", "a\x00"]) == "task 2 of 2: the task body contains a NUL byte (at character 1)"
    assert tasks_problem(["x" * 65537]) == ("the task body is 65537 bytes, over the limit of 65536 bytes "
                                            "(MAX_BODY_BYTES)")
    assert tasks_problem(["x"], {"k": "a\x00"}) == "header 'k' contains a NUL byte"


@pytest.mark.parametrize(("pairs", "problem"), [
    (["k=v", "x=y=z"], None),
    (["novalue"], "bad header 'novalue': expected key=value"),
    (["=v"], "bad header '=v': expected key=value"),
    (["bad key=1"], "bad header key 'bad key': use letters, digits, '_', '.' and '-' (not starting with '.' or "
                    "'-')"),
    (["k=\udcff"], "header 'k' is not valid UTF-8 (undecodable byte at character 0)"),
])
def test_header_pairs(pairs: list[str], problem: str | None) -> None:
    headers, found = parse_header_pairs(pairs)
    assert found == problem
    if problem is None:
        assert headers == {"k": "v", "x": "y=z"}
