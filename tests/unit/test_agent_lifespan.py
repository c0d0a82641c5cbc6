"""An agent stopping by itself (app finished, idle limit) and taking over the HOST-BOUND tasks of hosts seen
down: the pure policies, and the poll-thread pieces with a fake clock, result watch, presence board and
subscription."""

from __future__ import annotations

from pathlib import Path

from scalebox_stream.agent.lifespan import Lifespan
from scalebox_stream.agent.takeover import HostTakeover, reroutes
from scalebox_stream.kafka.presence import PRESENCE_TTL_S, Presence
from scalebox_stream.kafka.topics import task_topic
from scalebox_stream.policy.lifespan import idle_expired, idle_limit_s
from scalebox_stream.policy.takeover import Sighting, hosts_down
from scalebox_stream.spec import parse_app


def _spec(module_yaml: str, app_yaml: str = ""):
    text = f"name: demo\n{app_yaml}modules:\n  m:\n    command: /bin/true\n{module_yaml}"
    return parse_app(text, file="app.yaml", app_dir=Path("/tmp"), source=Path("/tmp/app.yaml"))


def test_idle_limit_is_scalebox_polls_times_interval_and_off_unless_asked():
    assert idle_limit_s(None, None, 6.0) is None, "no count: never stops for being idle"
    assert idle_limit_s(100, None, 6.0) == 600.0
    assert idle_limit_s(None, 10, 2.0) == 20.0, "the app's default_idle_polls"
    assert idle_limit_s(5, 10, 2.0) == 10.0, "the module's own count first"
    assert idle_limit_s(5, None, 2.0, always_running=True) is None
    assert not idle_expired(None, 100.0, 1.0), "busy"
    assert not idle_expired(99.5, 100.0, 1.0) and idle_expired(99.0, 100.0, 1.0)
    assert not idle_expired(0.0, 1e9, None)


def test_the_spec_reads_scalebox_idle_knobs_and_always_running():
    spec = _spec("    arguments: {max_idle_polls: 3, poll_interval_seconds: 0.5, slot_options: always_running}\n")
    m = spec.modules["m"]
    assert (m.max_idle_polls, m.poll_interval_seconds, m.always_running) == (3, 0.5, True)
    assert _spec("", "parameters: {default_idle_polls: 4}\n").default_idle_polls == 4


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Watch:
    def __init__(self) -> None:
        self.result: str | None = None
        self.reads = 0
        self.closed = False

    def text(self) -> str | None:
        self.reads += 1
        return self.result

    def close(self) -> None:
        self.closed = True


def test_an_agent_stops_after_its_idle_limit_counted_from_its_last_task():
    clock, busy = Clock(), [False]
    life = Lifespan(_spec("    max_idle_polls: 2\n    poll_interval_seconds: 1.5\n"), "m", lambda: busy[0],
                    clock=clock)
    clock.now = 2.9
    assert life.reason() is None
    busy[0] = True
    clock.now = 10.0
    assert life.reason() is None, "a task keeps it busy"
    busy[0] = False
    clock.now = 11.0
    assert life.reason() is None, "idle counted from the end of its last task"
    clock.now = 14.0
    assert life.reason().startswith("idle for 3s")


def test_an_agent_stops_once_its_app_has_a_result():
    clock, watch = Clock(), Watch()
    life = Lifespan(_spec(""), "m", lambda: True, app_end=lambda: watch, clock=clock)
    clock.now = 5.0
    assert life.reason() is None and watch.reads == 1
    watch.result = "168"
    assert life.reason() == "app finished: 168"
    clock.now = 1e6
    assert life.reason() == "app finished: 168", "never stops for being idle without a limit"
    life.close()
    assert watch.closed


def test_hosts_down_are_those_whose_agents_are_all_gone_for_long_enough():
    now, ttl = 1000.0, PRESENCE_TTL_S
    seen = [Sighting("h1", "heartbeat", now - 1), Sighting("h2", "heartbeat", now - 40),
            Sighting("h3", "heartbeat", now - ttl), Sighting("h4", "stopped", now - 2),
            Sighting("h5", "stopped", now - 60), Sighting("h6", "heartbeat", now - 60),
            Sighting("h6", "heartbeat", now - 2)]
    assert hosts_down(seen, "h1", now, ttl, ttl) == {"h2", "h5"}, \
        "h3 renewed within the ttl, h4 just stopped (a restart), h6 has a live agent"
    assert hosts_down(seen, "h2", now, ttl, 50.0) == {"h5"}, "its own host never; h2 gone 40s < 50s"
    assert hosts_down(seen, "h1", now, ttl, 100.0) == set()
    assert hosts_down([], "h1", now, ttl, ttl) == set()


class Subscription:
    def __init__(self) -> None:
        self.topics = [task_topic("demo", "m"), task_topic("demo", "m", host="h1")]
        self.subscribed: list[list[str]] = []

    def subscribe(self) -> None:
        self.subscribed.append(list(self.topics))


def test_reroute_takes_over_a_down_host_topic_once_and_gives_it_back_when_it_is_up():
    spec = _spec("    task_dist_mode: HOST-BOUND\n    on_host_down: reroute\n")
    assert reroutes(spec.modules["m"]) and not reroutes(_spec("    task_dist_mode: HOST-BOUND\n").modules["m"])
    clock, sub = Clock(), Subscription()
    clock.now = 1000.0
    board = {"a1": Presence("demo", "m", "h1", "heartbeat", 999.0),
             "a2": Presence("demo", "m", "h2", "heartbeat", 999.0),
             "x": Presence("other", "m", "h3", "heartbeat", 1.0)}
    takeover = HostTakeover("demo", spec.modules["m"], "h1", sub, lambda: board, clock=clock)
    takeover.check()
    assert sub.subscribed == [], "all hosts up: nothing changes"
    clock.now = 1030.0
    board["a1"] = Presence("demo", "m", "h1", "heartbeat", 1029.0)
    takeover.check()
    assert sub.subscribed == [[task_topic("demo", "m"), task_topic("demo", "m", host="h1"),
                               task_topic("demo", "m", host="h2")]], \
        "h2 silent for 31s: its topic taken over; another app's stale agent is not"
    clock.now = 1031.0
    takeover.check()
    clock.now = 1033.0
    takeover.check()
    assert len(sub.subscribed) == 1, "taken over once"
    board["a2b"] = Presence("demo", "m", "h2", "started", 1034.0)
    clock.now = 1035.0
    takeover.check()
    assert sub.subscribed[-1] == [task_topic("demo", "m"), task_topic("demo", "m", host="h1")], \
        "given back to h2's new agent"


def test_wait_is_the_default_and_never_subscribes():
    sub = Subscription()
    spec = _spec("    task_dist_mode: HOST-BOUND\n")
    assert spec.modules["m"].on_host_down == "wait"
    HostTakeover("demo", spec.modules["m"], "h1", sub,
                 lambda: {"a": Presence("demo", "m", "h2", "heartbeat", 0.0)}, clock=lambda: 1e6).check()
    assert sub.subscribed == []
