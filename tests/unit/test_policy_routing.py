"""Routing of emitted tasks to shared or host topics."""

from dataclasses import dataclass

from scalebox_stream.policy.routing import Route, missing_host_action, route


@dataclass
class M:
    task_dist_mode: str = "DEFAULT"
    pod_id: str | None = None


def test_default_modules_use_the_shared_topic():
    assert route(M(), M(), {}, "h1") == Route(None)
    assert route(M(), M(), {"to_host": "h2"}, "h1") == Route(None)


def test_host_bound_defaults_to_the_sending_host_and_obeys_to_host():
    assert route(M("HOST-BOUND"), M(), {}, "h1").host == "h1"
    assert route(M("HOST-BOUND"), M(), {"to_host": "h3"}, "h1").host == "h3"
    assert route(M("HOST-BOUND"), None, {}, "cli-host").host is None, "start tasks may run anywhere"
    assert route(M("HOST-BOUND"), None, {"to_host": "h2"}, "cli-host").host == "h2"


def test_modules_of_one_pod_hand_off_on_the_same_host():
    assert route(M(pod_id="p"), M(pod_id="p"), {}, "h1") == Route("h1", "same pod")
    assert route(M(pod_id="p"), M(pod_id="q"), {}, "h1").host is None


def test_missing_host_waits_then_fails_or_reroutes():
    assert missing_host_action(1, 30, "fail") == "wait"
    assert missing_host_action(30, 30, "fail") == "fail"
    assert missing_host_action(31, 30, "reroute") == "reroute"
