"""The fold's rules: ranks, and the batch size (how the log is cut) never changing the combined effect."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from support.workload import generate

from scalebox_stream.events import Event
from scalebox_stream.projector.apply import STAGING_TABLES, run_rows, task_rows
from scalebox_stream.projector.fold import (
    FINISHED_FIELDS,
    FINISHED_SUCCESS_RANK,
    TERMINAL_RANK,
    Fold,
    RunDelta,
    TaskDelta,
    fold,
    task_rank,
)


def test_ranks_order_attempts_then_stages_and_terminal_beats_all():
    assert task_rank(0, "created") == task_rank(1, "created") == 10
    assert task_rank(1, "created") < task_rank(1, "accepted") < task_rank(1, "running") < task_rank(1, "retrying")
    assert task_rank(1, "retrying") < task_rank(2, "created") < task_rank(2, "accepted")
    assert task_rank(10**6, "retrying") < FINISHED_SUCCESS_RANK < TERMINAL_RANK


def _merge_task(old: TaskDelta, new: TaskDelta) -> TaskDelta:
    """The SQL merge of `apply._TASK_MERGE`, written in Python (old = the stored row)."""
    take_result = new.result_attempt is not None and new.result_attempt >= old.attempts
    newer = new.rank is not None and (old.rank is None or new.rank > old.rank)
    return dataclasses.replace(
        old, creates=old.creates or new.creates,
        body=old.body if old.body is not None else new.body,
        headers=new.headers if old.body is None and new.body is not None else old.headers,
        parent=old.parent or new.parent,
        created_at=min(x for x in (old.created_at, new.created_at) if x is not None)
        if (old.created_at, new.created_at) != (None, None) else None,
        status=new.status if newer else old.status, rank=new.rank if newer else old.rank,
        finished_at=new.finished_at if newer else old.finished_at, attempts=max(old.attempts, new.attempts),
        result_attempt=new.result_attempt if take_result else old.result_attempt,
        exit_code=new.exit_code if take_result else old.exit_code, host=new.host if take_result else old.host,
        custom_out=new.custom_out if take_result else old.custom_out)


def _visible(d: TaskDelta) -> tuple:
    """The columns a `tasks` row keeps (not the fold's bookkeeping)."""
    return (d.body, d.headers, d.parent, d.created_at, d.status, d.rank, d.finished_at, d.attempts, d.exit_code,
            d.host, d.custom_out)


@pytest.mark.parametrize("cut", [1, 2, 7, 50])
@pytest.mark.parametrize("with_task_succeeded", [True, False], ids=["older log", "success in TaskFinished"])
def test_folding_in_pieces_then_merging_equals_folding_at_once(cut, with_task_succeeded):
    events = [e for e in generate(600, seed=3) if with_task_succeeded or e.event_type != "TaskSucceeded"]
    whole = fold(events)
    merged: dict[str, TaskDelta] = {}
    for start in range(0, len(events), cut):
        for task_id, delta in fold(events[start:start + cut]).tasks.items():
            merged[task_id] = _merge_task(merged[task_id], delta) if task_id in merged else delta
    assert {k: _visible(v) for k, v in merged.items()} == {k: _visible(v) for k, v in whole.tasks.items()}


def _ev(kind: str, task: str, attempt: int, at: int, **payload) -> Event:
    return Event(kind, "app", payload, module="m", task_id=task, attempt=attempt, host="h", occurred_at=at)


def _finished(task: str, attempt: int, at: int, exit_code: int, children: list[str] = ()) -> Event:
    p = {k: None for k in ("image", "container_id", "signal", "error", "message_text", "status_code", "input_bytes",
                           "output_bytes", "read_bytes", "write_bytes", "cpu_user_s", "cpu_system_s",
                           "peak_memory_bytes")}
    p.update(agent="a", slot=0, executor="process", outcome="succeeded" if exit_code == 0 else "failed",
             exit_code=exit_code, timed_out=False, stdout="o", stderr="", custom_out=f"c{attempt}", stdout_bytes=1,
             stderr_bytes=0, started_at=at - 1, finished_at=at, user_timestamps=[],
             emitted_task_ids=list(children), emitted_modules=["calc"] * len(children))
    return _ev("TaskFinished", task, attempt, at, **p)


def test_a_retried_task_folds_to_its_last_attempt():
    t = str(uuid.uuid4())
    f = fold([
        _ev("TaskCreated", t, 1, 1, body="b", headers={"k": "v"}, parent_task_id=None, not_before=None, topic="x"),
        _ev("TaskAccepted", t, 1, 2, agent="a", slot=1, topic="x", partition=0, offset=0),
        _finished(t, 1, 3, 1),
        _ev("TaskRetryScheduled", t, 1, 4, rule="1:2", delay_s=0.0, next_attempt=2),
        _ev("TaskAccepted", t, 2, 5, agent="a", slot=0, topic="x", partition=0, offset=1),
        _finished(t, 2, 6, 0),
        _ev("TaskSucceeded", t, 2, 7, attempts=2),
    ])
    task = f.tasks[t]
    assert (task.status, task.rank, task.attempts, task.exit_code, task.custom_out, task.finished_at) == (
        "succeeded", TERMINAL_RANK, 2, 0, "c2", 7)
    assert task.creates and task.body == "b" and task.headers == '{"k": "v"}' and task.created_at == 1
    first, second = f.runs[(t, 1)], f.runs[(t, 2)]
    assert (first.status, first.rank, first.retry_rule, first.slot) == ("failed", 3, "1:2", 0)  # the finisher
    assert (second.status, second.creates, second.created_at, second.accepted_at) == ("succeeded", True, None, 5)


def test_a_succeeded_attempt_ends_its_task_without_a_task_succeeded():
    t = str(uuid.uuid4())
    task = fold([_ev("TaskAccepted", t, 1, 2, agent="a", slot=0, topic="x", partition=0, offset=0),
                 _finished(t, 1, 5, 0)]).tasks[t]
    assert (task.status, task.rank, task.attempts, task.finished_at) == ("succeeded", FINISHED_SUCCESS_RANK, 1, 5)
    failed = fold([_finished(t, 1, 5, 3)]).tasks[t]
    assert failed.status != "succeeded" and (failed.rank or 0) < FINISHED_SUCCESS_RANK  # a failure may be retried


def test_a_log_with_task_succeeded_projects_as_before_in_either_order():
    t = str(uuid.uuid4())
    events = [_finished(t, 1, 5, 0), _ev("TaskSucceeded", t, 1, 7, attempts=1)]
    for order in (events, events[::-1]):
        task = fold(order).tasks[t]
        assert (task.status, task.rank, task.finished_at) == ("succeeded", TERMINAL_RANK, 7)
    first, second = fold(events[:1]).tasks[t], fold(events[1:]).tasks[t]
    whole = _visible(fold(events).tasks[t])
    assert _visible(_merge_task(first, second)) == _visible(_merge_task(second, first)) == whole


def test_a_late_result_of_an_earlier_attempt_does_not_replace_the_later_one():
    t = str(uuid.uuid4())
    f = Fold()
    for e in (_ev("TaskAccepted", t, 2, 1, agent="a", slot=0, topic="x", partition=0, offset=0), _finished(t, 1, 2, 9)):
        f.add(e)
    assert f.tasks[t].exit_code is None and f.tasks[t].attempts == 2
    assert f.tasks[t].creates  # any event inserts the row: its TaskCreated may come later in the log


def test_children_get_edges_and_placeholders():
    parent, child = str(uuid.uuid4()), str(uuid.uuid4())
    f = fold([_finished(parent, 1, 5, 0, [child])])
    assert f.edges == {(parent, child): ("calc", 0)}
    placeholder = f.tasks[child]
    assert (placeholder.creates, placeholder.parent, placeholder.module, placeholder.status) == (
        True, parent, "calc", "created")


def test_inconsistent_emitted_lists_are_refused():
    bad = _finished(str(uuid.uuid4()), 1, 5, 0, [str(uuid.uuid4())])
    bad.payload = bad.payload.replace(emitted_modules=[])
    with pytest.raises(ValueError, match="emitted"):
        fold([bad])


def test_staged_rows_match_their_staging_tables():
    f = fold(list(generate(300, seed=5)))
    assert {len(row) for row in task_rows(f)} == {len(STAGING_TABLES["sbx_stage_tasks"])}
    assert {len(row) for row in run_rows(f)} == {len(STAGING_TABLES["sbx_stage_runs"])}
    assert len(STAGING_TABLES["sbx_stage_tasks"]) == len(dataclasses.fields(TaskDelta))
    assert len(run_rows(f)) == len(f.runs) and isinstance(f.runs[next(iter(f.runs))], RunDelta)


def test_two_spellings_of_a_task_id_fold_into_one_row():
    t = str(uuid.uuid4())
    f = fold([_ev("TaskAccepted", t, 1, 1, agent="a", slot=0, topic="x", partition=0, offset=0),
              _ev("TaskStarted", t.upper(), 1, 2, agent="a", slot=0, executor="process", image=None,
                  container_id=None, started_at=2)])
    assert list(f.tasks) == [t] and list(f.runs) == [(t, 1)]
    assert fold([_ev("TaskSucceeded", "not-a-uuid", 1, 1, attempts=1)]).tasks["not-a-uuid"].status == "succeeded"


def test_a_start_that_carries_the_acceptance_sets_accepted_at():
    t = str(uuid.uuid4())
    started = dict(agent="a", slot=0, executor="process", image=None, container_id=None, started_at=3)
    f = fold([_ev("TaskStarted", t, 1, 3, **started, accepted_at=2, topic="x", partition=1, offset=7)])
    run = f.runs[(t, 1)]
    assert (run.accepted_at, run.started_at, run.status, run.creates) == (2, 3, "running", True)
    # a start after a TaskAccepted (the attempt waited for admission) leaves its acceptance alone
    f = fold([_ev("TaskAccepted", t, 1, 1, agent="a", slot=0, topic="x", partition=0, offset=0),
              _ev("TaskStarted", t, 1, 3, **started, accepted_at=None, topic="", partition=-1, offset=-1)])
    assert (f.runs[(t, 1)].accepted_at, f.runs[(t, 1)].started_at) == (1, 3)


def test_extra_attributes_are_kept_with_the_attempt_that_wrote_them():
    t = str(uuid.uuid4())
    with_extra = _finished(t, 1, 3, 0)
    with_extra = dataclasses.replace(with_extra, payload={**with_extra.payload.to_avro(),
                                                          "extra_attributes": '{"node":"n1"}'})
    run = fold([with_extra]).runs[(t, 1)]
    assert run.finished[FINISHED_FIELDS.index("extra_attributes")] == '{"node":"n1"}'
    assert fold([_finished(t, 1, 3, 0)]).runs[(t, 1)].finished[FINISHED_FIELDS.index("extra_attributes")] is None


def test_a_task_whose_created_event_comes_last_ends_succeeded_with_its_body():
    t = str(uuid.uuid4())
    created = _ev("TaskCreated", t, 1, 1, body="b", headers={"k": "v"}, parent_task_id=None, not_before=None,
                  topic="x")
    accepted = _ev("TaskAccepted", t, 1, 2, agent="a", slot=0, topic="x", partition=0, offset=0)
    ran, late = fold([accepted, _finished(t, 1, 3, 0)]), fold([created])
    assert ran.tasks[t].creates and ran.tasks[t].body is None and ran.tasks[t].status == "succeeded"
    merged = _merge_task(ran.tasks[t], late.tasks[t])
    in_order = fold([created, accepted, _finished(t, 1, 3, 0)]).tasks[t]
    assert _visible(merged) == _visible(in_order)
