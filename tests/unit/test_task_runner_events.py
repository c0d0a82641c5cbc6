"""The events a TaskRunner reports: a retry's TaskCreated, a child's, and the TaskFinished of an attempt it did
not run (real processes, no Kafka)."""

import uuid

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.task_runner import TaskMessage, TaskRunner
from scalebox_stream.events import Event, EventCodec, EventStamp, TaskCreated, TaskFinished, child_task_id
from scalebox_stream.executors.process import ProcessExecutor
from scalebox_stream.spec.loader import load_app

CODEC = EventCodec()
IDENTITY = AgentIdentity("ev", "m", host="h1", cluster="c1", agent_id="h1-1-abc")


def _runner(tmp_path, modules: str) -> TaskRunner:
    app = tmp_path / "app.yaml"
    app.write_text(f"name: ev\nmodules:\n{modules}")
    return TaskRunner(load_app(app), IDENTITY, ProcessExecutor(), CODEC, tmp_path / "work")


def _task(created: Event) -> TaskMessage:
    return TaskMessage(created, created.payload.topic, 0, 5)


def _created(**fields) -> Event:
    return EventStamp("ev", producer="cli").task_created(str(uuid.uuid4()), "m", "x", {"k": "v"}, "sbx.tasks.ev.m",
                                                         **fields)


def _decoded(records) -> list[tuple[str, Event]]:
    return [(r.topic, CODEC.decode(r.value)) for r in records]


def test_a_retry_is_the_same_task_as_the_next_attempt(tmp_path):
    runner = _runner(tmp_path, "  m:\n    command: [/bin/false]\n    executor: process\n"
                               "    retry: {backoff: null, rules: [{exit_codes: '*', retries: 1}]}\n")
    created = _created(parent_task_id="p")
    report = runner.run(_task(created), 0, lambda _: None)
    events = _decoded(report.records)
    assert [e.event_type for _, e in events] == ["TaskFinished", "TaskRetryScheduled", "TaskCreated"]
    topic, again = events[-1]
    assert topic == "sbx.tasks.ev.m"
    assert (again.task_id, again.attempt, again.module, again.producer, again.cluster) == (
        created.task_id, 2, "m", "h1-1-abc", "c1")
    assert again.payload == TaskCreated(body="x", headers={"k": "v"}, parent_task_id="p", topic="sbx.tasks.ev.m",
                                        task_created_at=created.occurred_at)
    assert events[1][1].payload.next_attempt == 2


def test_a_child_is_a_task_created_of_its_target_module(tmp_path):
    runner = _runner(tmp_path, "  m:\n    command: [/bin/sh, -c, 'echo calc,hello > sink-tasks.txt']\n"
                               "    executor: process\n  calc:\n    command: [/bin/true]\n    executor: process\n")
    created = _created()
    report = runner.run(_task(created), 0, lambda _: None)
    (_, finished), (topic, child), (_, child_event) = _decoded(report.records)
    assert finished.payload.outcome == "succeeded", finished.payload.error
    assert finished.payload.emitted_task_ids == [child.task_id] and finished.payload.emitted_modules == ["calc"]
    assert topic == "sbx.tasks.ev.calc" and child == child_event
    assert (child.task_id, child.module, child.attempt, child.producer) == (
        child_task_id(created.task_id, 0), "calc", 1, "h1-1-abc")
    assert child.payload.body == "hello" and child.payload.parent_task_id == created.task_id
    assert child.payload.headers["from_module"] == "m" and child.payload.topic == "sbx.tasks.ev.calc"


def test_a_lost_attempt_is_reported_as_a_finish_with_nothing_observed(tmp_path):
    runner = _runner(tmp_path, "  m:\n    command: [/bin/true]\n    executor: process\n")
    created = _created()
    (_, lost), = _decoded([runner.lost_report(created, 3, 137)])
    p = lost.payload
    assert isinstance(p, TaskFinished) and (lost.task_id, lost.attempt, lost.module) == (created.task_id, 3, "m")
    assert (p.agent, p.slot, p.executor, p.outcome, p.exit_code, p.container_id, p.signal, p.timed_out) == (
        "h1-1-abc", -1, "process", "lost", 137, None, None, False)
    assert "attempt lost" in p.error and p.started_at == p.finished_at > 0
    assert (p.stdout, p.stderr, p.custom_out, p.stdout_bytes, p.stderr_bytes, p.user_timestamps,
            p.emitted_task_ids, p.input_bytes, p.read_bytes, p.cpu_user_s, p.peak_memory_bytes) == (
        "", "", "", 0, 0, [], [], None, None, None, None)


def test_a_secret_reaches_the_program_and_no_record(tmp_path, monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    (tmp_path / "db").write_text(secret + "\n")
    monkeypatch.setenv("RUNNER_TEST_TOKEN", "tok-" + secret)
    script = ('test "$DB" = "$(cat ' + str(tmp_path / "db") + ')" || exit 9; echo "out $DB"; echo "err $TOKEN" >&2; '
              'echo "$DB" > custom-out.txt; exit 3')
    runner = _runner(tmp_path, f"  m:\n    command: [/bin/sh, -c, '{script}']\n    executor: process\n"
                               f"    secrets: {{DB: {{file: {tmp_path / 'db'}}}, TOKEN: {{env: RUNNER_TEST_TOKEN}}}}\n")
    report = runner.run(_task(_created()), 0, lambda _: None)
    assert all(secret.encode() not in r.value for r in report.records)
    finished = _decoded(report.records)[0][1].payload
    assert finished.exit_code == 3  # the program saw the secret (else 9)
    # TOKEN (tok-<secret>) is redacted whole: the longest value first
    assert (finished.stdout, finished.stderr, finished.custom_out) == ("out [secret]\n", "err [secret]\n",
                                                                      "[secret]\n")


def test_an_unreadable_secret_is_an_error_naming_it(tmp_path):
    runner = _runner(tmp_path, "  m:\n    command: [/bin/true]\n    executor: process\n"
                               f"    secrets: {{DB: {{file: {tmp_path / 'missing'}}}}}\n")
    report = runner.run(_task(_created()), 0, lambda _: None)
    finished = _decoded(report.records)[0][1].payload
    assert finished.outcome == "error" and finished.exit_code == 125
    assert finished.error.startswith(f"secret DB: cannot read {tmp_path / 'missing'}")


def test_extra_attributes_ride_on_the_finish_and_a_malformed_file_only_warns(tmp_path):
    runner = _runner(tmp_path, "  m:\n    command: [/bin/sh, -c, 'printf \"$1\" > extra-attributes.txt', sh]\n"
                               "    executor: process\n")
    created = EventStamp("ev", producer="cli").task_created(str(uuid.uuid4()), "m", "node=n1\\nslots=4\\n", {},
                                                            "sbx.tasks.ev.m")
    (_, finished), = _decoded(runner.run(_task(created), 0, lambda _: None).records)
    assert finished.payload.outcome == "succeeded" and finished.payload.error is None
    assert finished.payload.extra_attributes == '{"node":"n1","slots":"4"}'
    created = EventStamp("ev", producer="cli").task_created(str(uuid.uuid4()), "m", "{broken", {}, "sbx.tasks.ev.m")
    (_, finished), = _decoded(runner.run(_task(created), 0, lambda _: None).records)
    assert finished.payload.outcome == "succeeded" and finished.payload.extra_attributes is None
    assert finished.payload.error.startswith("extra-attributes.txt: not a JSON object")
