"""EventStamp: the one place that stamps a producer's identity on its events, and builds a TaskCreated."""

import socket

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.events import AppFinished, EventCodec, EventStamp, TaskCreated, TaskSucceeded


def test_an_agents_stamp_carries_its_app_module_cluster_host_and_id():
    identity = AgentIdentity("app", "calc", host="h1", cluster="far", agent_id="h1-7-abc")
    event = EventStamp.for_agent(identity).event(TaskSucceeded(attempts=2), "t1", 2)
    assert (event.event_type, event.app, event.module, event.cluster, event.host, event.producer, event.task_id,
            event.attempt) == ("TaskSucceeded", "app", "calc", "far", "h1", "h1-7-abc", "t1", 2)
    assert event.payload == TaskSucceeded(attempts=2)


def test_an_event_about_another_modules_task_names_that_module():
    stamp = EventStamp.for_agent(AgentIdentity("app", "calc", host="h1", cluster="c", agent_id="a"))
    assert stamp.event(TaskSucceeded(attempts=1), "t", 1, module="gather").module == "gather"


def test_each_event_gets_its_own_id_and_time():
    stamp = EventStamp("app", producer="p")
    one, two = (stamp.event(TaskSucceeded(attempts=1)) for _ in range(2))
    assert one.event_id != two.event_id and two.occurred_at >= one.occurred_at > 0


def test_a_commands_stamp_names_this_host_and_no_module():
    event = EventStamp.for_cli("app").event(AppFinished(succeeded=3, failed=1))
    assert (event.module, event.cluster, event.host, event.producer) == ("", "", socket.gethostname(), "cli")
    assert EventStamp.for_cli("app", "start-task").producer == "start-task"


def test_task_created_builds_the_payload_and_the_envelope_of_a_task():
    stamp = EventStamp("app", "gen", "c", "h", "a")
    event = stamp.task_created("t", "calc", "body", {"k": "v"}, "sbx.tasks.app.calc", attempt=3,
                               parent_task_id="p", not_before=9, task_created_at=5)
    assert (event.event_type, event.module, event.task_id, event.attempt, event.producer) == (
        "TaskCreated", "calc", "t", 3, "a")
    assert event.payload == TaskCreated(body="body", headers={"k": "v"}, parent_task_id="p", not_before=9,
                                        topic="sbx.tasks.app.calc", task_created_at=5)
    codec = EventCodec()
    assert codec.decode(codec.encode(event)) == event
