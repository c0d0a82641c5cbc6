"""`launch.run_app` and `launch.feed` against in-memory fakes of the world: what `scalebox run` starts, sends,
waits for, announces and stops, in which order."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest
from rich.console import Console

from scalebox_stream.config import CliSettings, Connections
from scalebox_stream.events import Event
from scalebox_stream.launch.children import Child
from scalebox_stream.launch.feed import chunks, feed
from scalebox_stream.launch.placement import read_record
from scalebox_stream.launch.progress import RunState
from scalebox_stream.launch.run import RunKit, RunRequest, run_app, start_tasks
from scalebox_stream.policy.restarts import RestartPolicy
from scalebox_stream.spec import load_app

APP = """name: spread
cluster: home
modules:
  scatter: {command: [/bin/true], sink_modules: [calc], slots: 2, start_task: [a, b]}
  calc: {command: [/bin/true], cluster: far, sink_modules: [gather]}
  gather: {command: [/bin/true], max_backlog: 4}
parameters: {main_router: scatter}
"""
CONNS = Connections("kafka:9092", "postgresql://pg")


@pytest.fixture
def spec(tmp_path: Path):
    (tmp_path / "app.yaml").write_text(APP)
    return load_app(tmp_path / "app.yaml")


class World:
    """Every fake part of a run, writing what happens to one journal."""

    def __init__(self, *, child_dies: bool = False, restarts: bool = False, backlogs: Sequence[int] = (),
                 failed: int = 0) -> None:
        self.journal: list[tuple] = []
        self.child_dies, self.restarts, self.backlogs, self.failed = child_dies, restarts, list(backlogs), failed
        self.started: dict[str, Child] = {}
        self.sent: list[tuple[str, str]] = []
        self.transactions: list[list[tuple[str, str]]] = []

    # deploy
    def deploy(self, spec, env_files, kafka, pg) -> None:
        self.journal.append(("deploy", spec.name, env_files, kafka, pg))

    # children
    def children(self, log_dir: Path, env: dict[str, str], policy: RestartPolicy) -> World:
        self.journal.append(("children", log_dir, env))
        self.log_dir, self.policy = log_dir, policy
        return self

    def start(self, name: str, args: list[str]) -> Child:
        self.journal.append(("start", name, args))
        self.started[name] = Child(name, FakeProcess(100 + len(self.started)), self.log_dir / f"{name}.log", args)
        return self.started[name]

    def supervise(self, say) -> list[Child]:
        if self.child_dies:
            raise RuntimeError("agent-scatter exited with code 3, not restarted (restarts are off):\nboom")
        if not self.restarts:
            return []
        say("agent-scatter exited with code -9 (signal SIGKILL); restarting it in 1 s (restart 1 of 5 in 10 min)")
        restarted = self.started["agent-scatter"]
        restarted.process = FakeProcess(200)
        return [restarted]

    def stop(self, grace_s: float = 0.0) -> None:
        self.journal.append(("stop children", grace_s))

    # Kafka edge
    def sender(self, kafka: str, settings: CliSettings) -> World:
        return self

    def send(self, app: str, tasks, headers=None, **host) -> list[str]:
        self.transactions.append(list(tasks))
        self.journal.append(("send", app, len(tasks), headers, *host.values()))
        ids = [f"id{len(self.sent) + i}" for i in range(len(tasks))]
        self.sent += tasks
        return ids

    def send_event(self, event: Event) -> None:
        self.journal.append(("event", event.event_type, event.app, event.payload))

    def backlog_monitor(self, kafka: str) -> World:
        self.journal.append(("backlog monitor", kafka))
        return self

    def backlog(self, app: str, module: str) -> int:
        self.journal.append(("backlog", module))
        return self.backlogs.pop(0) if self.backlogs else 0

    def close(self) -> None:
        self.journal.append(("close backlog monitor",))

    def reaper(self, kafka: str) -> None:
        return None

    def wait(self, pg, roots, app, check_children, timeout_s, console, poll_s) -> RunState:
        self.journal.append(("wait", pg, tuple(roots), timeout_s, poll_s))
        check_children()
        modules = [{"module": "scatter", "created": 2, "waiting": 0, "running": 0, "succeeded": 2 - self.failed,
                    "failed": self.failed, "attempts": 2}]
        return RunState(modules, 0)

    def kit(self) -> RunKit:
        return RunKit(deploy=self.deploy, children=self.children, sender=self.sender,
                      backlog=self.backlog_monitor, reaper=self.reaper, wait=self.wait, watch=None,
                      state_owner=None, result=None, host_topic=self.host_topic)

    def host_topic(self, kafka: str, app: str, module: str, host: str) -> None:
        self.journal.append(("host topic", app, module, host))


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid


def _run(spec, world: World, tmp_path: Path, console: Console | None = None, environ: dict[str, str] | None = None,
         **request):
    settings = CliSettings.load(environ=environ or {}, home=tmp_path / "home")
    req = RunRequest(spec.source, tuple(start_tasks(spec, [], None)), **request)
    return run_app(spec, req, settings, CONNS, console or Console(file=io.StringIO()), world.kit())


def names(journal: list[tuple]) -> list[str]:
    return [entry[0] for entry in journal]


def test_a_run_deploys_starts_the_home_cluster_sends_waits_announces_and_stops(spec, tmp_path: Path) -> None:
    world = World()
    result = _run(spec, world, tmp_path, metrics_port=9100, headers={"k": "v"}, timeout_s=60)
    assert names(world.journal) == ["deploy", "children", "start", "start", "start", "send", "wait", "event",
                                    "stop children"]
    assert world.journal[0] == ("deploy", "spread", (), "kafka:9092", "postgresql://pg")
    assert world.journal[1][1] == tmp_path / "home" / "logs" / "spread"
    assert world.journal[1][2] == {"SCALEBOX_KAFKA": "kafka:9092", "SCALEBOX_PG": "postgresql://pg"}
    started = {entry[1]: entry[2] for entry in world.journal if entry[0] == "start"}
    assert set(started) == {"projector", "agent-scatter", "agent-gather"}, "calc runs on the far cluster"
    assert started["projector"] == ["projector", "--metrics-port", "9100"]
    assert started["agent-scatter"] == ["agent", "--app", "spread", "--module", "scatter", "--app-file",
                                        str(spec.source), "--slots", "2", "--metrics-port", "9101"]
    assert world.transactions == [[("scatter", "a"), ("scatter", "b")]], "the start tasks go in one transaction"
    assert world.journal[5] == ("send", "spread", 2, {"k": "v"})
    assert world.journal[6] == ("wait", "postgresql://pg", ("id0", "id1"), 60, 0.3)
    assert world.journal[7] == ("event", "AppFinished", "spread", {"succeeded": 2, "failed": 0})
    assert result.state.succeeded == 2 and result.state.failed == 0 and result.log_dir == world.log_dir


def test_failed_tasks_are_counted_in_app_finished(spec, tmp_path: Path) -> None:
    world = World(failed=1)
    assert _run(spec, world, tmp_path).state.failed == 1
    assert ("event", "AppFinished", "spread", {"succeeded": 1, "failed": 1}) in world.journal


def test_a_dead_child_ends_the_run_and_every_child_is_stopped(spec, tmp_path: Path) -> None:
    world = World(child_dies=True)
    with pytest.raises(RuntimeError, match="agent-scatter exited with code 3, not restarted .*:\nboom"):
        _run(spec, world, tmp_path)
    assert names(world.journal)[-1] == "stop children"
    assert "event" not in names(world.journal), "no AppFinished for a run that did not finish"


def test_a_restarted_agent_is_said_on_the_console_and_its_new_pid_recorded(spec, tmp_path: Path) -> None:
    world, out = World(restarts=True), io.StringIO()
    result = _run(spec, world, tmp_path, Console(file=out, width=200),
                  environ={"SCALEBOX_CHILD_RESTARTS": "3", "SCALEBOX_CHILD_RESTART_WINDOW_S": "60"})
    assert (world.policy.limit, world.policy.window_s) == (3, 60.0), "the policy of the settings"
    assert "agent-scatter exited with code -9 (signal SIGKILL); restarting it in 1 s" in out.getvalue()
    assert "event" in names(world.journal), "the run went on"
    _, agents = read_record(result.log_dir)
    assert {a.module: a.ref for a in agents} == {"scatter": "200", "gather": "102"}


def test_feed_cuts_transactions_where_a_bounded_module_must_be_checked(spec) -> None:
    sends = [("gather", str(i)) for i in range(5)]
    assert [(check, len(chunk)) for check, chunk in chunks(spec, sends)] == [("gather", 2), ("gather", 2),
                                                                             ("gather", 1)]
    assert chunks(spec, [("scatter", "a"), ("scatter", "b")]) == [(None, [("scatter", "a"), ("scatter", "b")])]


def test_feed_waits_while_the_backlog_is_over_half_the_bound(spec) -> None:
    world = World(backlogs=[3, 2, 0, 0])
    waits: list[tuple[str, int]] = []
    ids = feed(spec, [("gather", str(i)) for i in range(5)], world, lambda: world.backlog_monitor("k"),
               on_wait=lambda module, n: waits.append((module, n)), poll_s=0)
    assert ids == [f"id{i}" for i in range(5)]
    assert waits == [("gather", 3)], "3 > 4 // 2: wait; then 2 is not over"
    assert names(world.journal) == ["backlog monitor", "backlog", "backlog", "send", "backlog", "send", "backlog",
                                    "send", "close backlog monitor"]


def test_feed_without_bounds_needs_no_backlog_monitor(spec) -> None:
    world = World()
    feed(spec, [("scatter", "a")], world, lambda: pytest.fail("no bound, no monitor"))
    assert names(world.journal) == ["send"]




def test_an_interrupted_run_says_so_and_stops_every_child(spec, tmp_path: Path) -> None:
    world = World()

    def interrupted(*args: object) -> RunState:
        raise KeyboardInterrupt

    kit = world.kit()
    out = io.StringIO()
    request = RunRequest(spec.source, (("scatter", "a"),))
    with pytest.raises(KeyboardInterrupt):
        run_app(spec, request, CliSettings.load(environ={}, home=tmp_path), CONNS, Console(file=out),
                RunKit(**{**kit.__dict__, "wait": interrupted}))
    assert "interrupted; stopping agents" in out.getvalue()
    assert names(world.journal)[-1] == "stop children" and "event" not in names(world.journal)


def test_a_run_starts_a_state_owner_and_reads_the_app_result_before_stopping_it(spec, tmp_path: Path) -> None:
    world = World()

    def owner(children: World) -> None:
        children.start("state-owner", ["state-owner", "--ephemeral"])

    class Result:
        def __init__(self, kafka: str, app: str) -> None:
            world.journal.append(("watch result", kafka, app))

        def text(self) -> str:
            world.journal.append(("result",))
            return "168"

    kit = RunKit(**{**world.kit().__dict__, "state_owner": owner, "result": Result})
    outcome = run_app(spec, RunRequest(spec.source, (("scatter", "a"),)), CliSettings.load(environ={}, home=tmp_path),
                      CONNS, Console(file=io.StringIO()), kit)
    assert names(world.journal) == ["deploy", "children", "start", "start", "watch result", "start", "start", "send",
                                    "wait", "event", "result", "stop children"]
    assert world.journal[3] == ("start", "state-owner", ["state-owner", "--ephemeral"]), "next to the projector"
    assert world.journal[4] == ("watch result", "kafka:9092", "spread"), "its version before the run's tasks"
    assert outcome.result == "168"


def test_start_tasks_of_a_host_bound_module_go_to_their_to_host(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("name: pinned\nmodules:\n"
                                       "  m: {command: [/bin/true], task_dist_mode: HOST-BOUND}\n")
    spec = load_app(tmp_path / "app.yaml")
    world = World()
    settings = CliSettings.load(environ={}, home=tmp_path / "home")
    request = RunRequest(spec.source, (("m", "1"), ("m", "2"), ("m", "3")), task_headers=(
        {"to_host": "n1"}, {"to_host": "n1"}, {}))
    run_app(spec, request, settings, CONNS, Console(file=io.StringIO()), world.kit())
    sends = [entry for entry in world.journal if entry[0] in ("host topic", "send")]
    assert sends == [("host topic", "pinned", "m", "n1"), ("send", "pinned", 2, {"to_host": "n1"}, "n1"),
                     ("send", "pinned", 1, {})], "the host's topic first, then its tasks; the rest as before"
    assert world.transactions == [[("m", "1"), ("m", "2")], [("m", "3")]]
