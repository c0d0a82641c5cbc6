"""Placement on other hosts: `scalebox run` starts calc's agents over SSH on two test hosts (containers with
their own hostname, address and sshd), a host killed mid-run loses no task, and `host list` shows it down."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from pipeline import REPO, list_tasks, scalebox, until
from ssh_hosts import SshHosts, started_hosts
from test_primes import EXPECTED

from scalebox_stream.launch.state_service import stop_state_service

sys.path.insert(0, str(REPO / "tests" / "bench"))
import bench_hosts_startup  # noqa: E402


@pytest.fixture(scope="module")
def hosts(kafka_bootstrap, docker_available, tmp_path_factory) -> SshHosts:
    work = tmp_path_factory.mktemp("ssh-hosts")
    with started_hosts(["h1", "h2", "h3"], kafka_bootstrap, work, [work]) as started:
        yield started


def _primes(hosts: SshHosts, calc_delay_s: float, start: str = "ssh") -> tuple[Path, str]:
    """A copy of examples/primes (app-process.yaml) in the hosts' shared directory with calc on `h1:2,h2:2`,
    each calc task first sleeping `calc_delay_s` (so both hosts get some), and the cluster inline."""
    app_dir = hosts.key.parent / f"primes-{uuid.uuid4().hex[:8]}"
    shutil.copytree(REPO / "examples" / "primes", app_dir)
    (app_dir / "slow-calc.sh").write_text(f'#!/bin/sh\nsleep {calc_delay_s}\nexec "$(dirname "$0")/calc/run.sh" "$@"\n')
    (app_dir / "slow-calc.sh").chmod(0o755)
    app = yaml.safe_load((app_dir / "app-process.yaml").read_text())
    name = f"primes-{start}-{uuid.uuid4().hex[:6]}"
    app["name"] = name
    app["modules"]["calc"].pop("slots", None)
    app["modules"]["calc"].update({"command": "./slow-calc.sh", "slots": ["h1:2", "h2:2"]})
    app["clusters"] = hosts.cluster_yaml(start=start)
    (app_dir / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    return app_dir / "app.yaml", name


def _check_calc(kafka: str, pg: str, app: str) -> list[dict]:
    calc = list_tasks(kafka, pg, app, "calc")
    assert {t["body"]: int(t["custom_out"]) for t in calc} == EXPECTED
    assert all(t["status"] == "succeeded" for t in calc), calc
    assert sum(int(t["custom_out"]) for t in calc) == 168
    return calc


def test_primes_calc_over_ssh_on_two_hosts(hosts, kafka_bootstrap, pg_dsn):
    app_file, name = _primes(hosts, 0.5)
    started = time.monotonic()
    result = scalebox(["run", str(app_file), "1000"], kafka_bootstrap, pg_dsn, timeout=240)
    elapsed = time.monotonic() - started
    assert result.code == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "h1 (ssh)" in result.stderr and "h2 (ssh)" in result.stderr, result.stderr
    calc = _check_calc(kafka_bootstrap, pg_dsn, name)
    assert {t["host"] for t in calc} == {"h1", "h2"}, "the projection's host column names both hosts"
    assert all(t["attempts"] == 1 for t in calc)
    for host in hosts.hosts:
        assert host.agent_processes() == [], f"agents left running on {host.name}"
    logs = scalebox(["logs", name, "--module", "calc", "--host", "h2"], kafka_bootstrap, pg_dsn)
    assert logs.code == 0 and logs.stdout.startswith("calc@h2 | "), logs
    print(f"primes over SSH on 2 hosts: {elapsed:.1f}s")


SERVED_TASK = """#!/bin/sh
sleep "${TASK_SLEEP:-0}"
printf '%s@%s' "$1" "$HOST_NAME" > "$WORK_DIR/custom-out.txt"
"""


def _served(hosts: SshHosts, module: dict) -> tuple[Path, str]:
    """An app of one module `m` (SERVED_TASK plus `module`'s keys) in the hosts' shared directory, with the
    cluster inline."""
    app_dir = hosts.key.parent / f"served-{uuid.uuid4().hex[:8]}"
    app_dir.mkdir()
    (app_dir / "task.sh").write_text(SERVED_TASK)
    (app_dir / "task.sh").chmod(0o755)
    name = app_dir.name
    app = {"name": name, "modules": {"m": {"command": "./task.sh", **module}}, "clusters": hosts.cluster_yaml()}
    (app_dir / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    return app_dir / "app.yaml", name


def _agents_of(host, app: str) -> list[str]:
    return [line for line in host.agent_processes() if f"--app {app} " in line]


def _wait_for_members(kafka: str, app: str, module: str, count: int, timeout_s: float = 60.0) -> None:
    """Until `count` agents of the module hold partitions (so tasks added next spread over them)."""
    from confluent_kafka.admin import AdminClient

    from scalebox_stream.kafka.config import admin_config
    from scalebox_stream.kafka.topics import module_group

    admin, group = AdminClient(admin_config(kafka)), module_group(app, module)

    def stable() -> bool:
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        return (str(described.state).endswith("STABLE")
                and sum(1 for m in described.members if m.assignment.topic_partitions) >= count)

    until(f"{count} agents of {module} to join", stable, timeout_s)


@pytest.fixture
def home(tmp_path, kafka_bootstrap):
    """A Scalebox home of the test's own; the state owner `app create` starts there is stopped at the end."""
    yield tmp_path / "home"
    stop_state_service(tmp_path / "home", kafka_bootstrap)


def test_app_create_places_agents_over_ssh_and_they_stop_with_the_app(hosts, kafka_bootstrap, pg_dsn, home):
    """`app create` starts m's agents on h1 and h2 over SSH (they outlive the command); tasks added later run on
    both hosts; `app set-finished` makes the agents stop by themselves, leaving none on either host."""
    app_file, name = _served(hosts, {"slots": ["h1:1", "h2:1"], "environments": {"TASK_SLEEP": "0.3"}})
    h1, h2 = hosts.hosts[:2]
    created = scalebox(["app", "create", str(app_file)], kafka_bootstrap, pg_dsn, home=home, timeout=120)
    assert created.code == 0, created.stderr
    try:
        assert created.stdout == f'{{"app_id":{name}}}\n'
        assert _agents_of(h1, name) and _agents_of(h2, name), "the agents run once `app create` returned"
        _wait_for_members(kafka_bootstrap, name, "m", 2)
        bodies = [f"b{i}" for i in range(8)]
        added = scalebox(["task", "add", "--app-id", name, *bodies], kafka_bootstrap, pg_dsn, home=home)
        assert added.code == 0, added.stderr
        tasks = until("the tasks to succeed", lambda: (ts := list_tasks(kafka_bootstrap, pg_dsn, name)) and
                       len([t for t in ts if t["status"] == "succeeded"]) == len(bodies) and ts, 90)
        assert {t["host"] for t in tasks} == {"h1", "h2"}, "the projection's host column names both hosts"
        assert {t["custom_out"] for t in tasks} == {f"{t['body']}@{t['host']}" for t in tasks}
        finished = scalebox(["app", "set-finished", "--app-id", name, "all done"], kafka_bootstrap, pg_dsn,
                            home=home)
        assert finished.code == 0, finished.stderr
        until("no agent left on h1 and h2", lambda: not _agents_of(h1, name) and not _agents_of(h2, name), 30)
        logs = scalebox(["logs", name, "--host", "h2"], kafka_bootstrap, pg_dsn, home=home)
        assert "stopping by itself: app finished: all done" in logs.stdout, logs.stdout[-2000:]
        until("the server to stop", lambda: not (home / "apps" / name / "serve.pid").exists(), 30)
    finally:
        scalebox(["app", "stop", name], kafka_bootstrap, pg_dsn, home=home)


def test_an_idle_agent_stops_after_its_modules_idle_limit(hosts, kafka_bootstrap, pg_dsn, home):
    """max_idle_polls x poll_interval_seconds without a task: the agent on h1 stops by itself (the app stays
    served: its other agent, on h2, has always_running)."""
    app_file, name = _served(hosts, {"slots": ["h1:1"], "max_idle_polls": 3, "poll_interval_seconds": 1})
    app = yaml.safe_load(app_file.read_text())
    app["modules"]["n"] = {"command": "./task.sh", "slots": ["h2:1"], "max_idle_polls": 3,
                           "poll_interval_seconds": 1, "slot_options": "always_running"}
    app_file.write_text(yaml.safe_dump(app, sort_keys=False))
    h1, h2 = hosts.hosts[:2]
    created = scalebox(["app", "create", str(app_file)], kafka_bootstrap, pg_dsn, home=home, timeout=120)
    assert created.code == 0, created.stderr
    try:
        added = scalebox(["task", "add", "--app-id", name, "one"], kafka_bootstrap, pg_dsn, home=home)
        assert added.code == 0, added.stderr
        until("the task to succeed", lambda: [t for t in list_tasks(kafka_bootstrap, pg_dsn, name)
                                               if t["status"] == "succeeded"], 60)
        until("h1's agent to stop", lambda: not _agents_of(h1, name), 30)
        logs = scalebox(["logs", name, "--host", "h1"], kafka_bootstrap, pg_dsn, home=home)
        assert "stopping by itself: idle for 3s" in logs.stdout, logs.stdout[-2000:]
        assert _agents_of(h2, name), "always_running: n's agent stays"
    finally:
        scalebox(["app", "stop", name], kafka_bootstrap, pg_dsn, home=home)
    assert not _agents_of(h2, name), "`app stop` stops the agents it started over SSH"


def test_a_host_without_scalebox_stops_the_run_and_says_what_to_install(hosts, kafka_bootstrap, pg_dsn):
    app_file, _ = _primes(hosts, 0)
    app = yaml.safe_load(app_file.read_text())
    app["clusters"]["local"]["hosts"]["h2"]["parameters"] = {"scalebox_command": "/opt/nowhere/scalebox"}
    app_file.write_text(yaml.safe_dump(app, sort_keys=False))
    result = scalebox(["run", str(app_file), "1000"], kafka_bootstrap, pg_dsn, timeout=120)
    assert result.code == 1, result
    assert "host h2" in result.stderr and "pip install scalebox-stream==" in result.stderr, result.stderr
    assert hosts.hosts[0].agent_processes() == [], "the agents already started on h1 were not stopped"


def test_start_up_on_three_ssh_hosts(hosts, kafka_bootstrap, pg_dsn):
    """The start-up benchmark's measurement once (tests/bench/bench_hosts_startup.py): reported, not asserted."""
    first, wall = bench_hosts_startup.measure(hosts, hosts.key.parent, kafka_bootstrap, pg_dsn)
    print(f"3 modules on 3 SSH hosts: command -> first task running {first:.2f}s, whole run {wall:.2f}s")
    assert 0 < first < wall
    for host in hosts.hosts:
        assert host.agent_processes() == [], f"agents left running on {host.name}"


def test_a_host_killed_mid_run_loses_no_task(hosts, kafka_bootstrap, pg_dsn, tmp_path):
    app_file, name = _primes(hosts, 3.0)
    victim = hosts.hosts[1]
    outcome: dict = {}

    def run() -> None:
        outcome["result"] = scalebox(["run", str(app_file), "1000"], kafka_bootstrap, pg_dsn, timeout=300)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 120
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        while not conn.execute("SELECT 1 FROM task_runs r JOIN tasks t USING (task_id) WHERE t.app = %s AND "
                               "t.module = 'calc' AND r.host = %s AND r.status = 'running'",
                               (name, victim.name)).fetchall():
            assert time.monotonic() < deadline and runner.is_alive(), f"no calc task ran on {victim.name}"
            time.sleep(0.1)
    subprocess.run(["docker", "kill", victim.container], capture_output=True, timeout=60)
    runner.join(300)
    result = outcome["result"]
    assert result.code == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    calc = _check_calc(kafka_bootstrap, pg_dsn, name)
    shown = [json.loads(scalebox(["task", "show", t["task_id"], "--json"], kafka_bootstrap, pg_dsn).stdout)
             for t in calc if t["attempts"] > 1]
    assert shown, f"no task of the killed host was run again: {calc}"
    for task in shown:
        succeeded = [a for a in task["attempts_detail"] if a["status"] == "succeeded"]
        assert len(succeeded) == 1, f"task {task['task_id']} succeeded {len(succeeded)} times"
    listed = scalebox(["host", "list", "--app-file", str(app_file), "--json"], kafka_bootstrap, pg_dsn)
    assert listed.code == 0, listed.stderr
    rows = {r["host"]: r for r in json.loads(listed.stdout)}
    assert rows[victim.name]["status"] == "down" and rows[victim.name]["heartbeat_age_s"] > 0, rows
    assert rows["h1"]["status"] == "idle", rows
    checked = scalebox(["host", "check-status", victim.name, "--app-file", str(app_file), "--json"],
                       kafka_bootstrap, pg_dsn)
    assert checked.code == 0 and json.loads(checked.stdout)[0]["reachable"].startswith("no"), checked


def test_host_bound_tasks_of_a_killed_host_are_rerouted_once(hosts, kafka_bootstrap, pg_dsn, home):
    """HOST-BOUND tasks queued for h3 with `on_host_down: reroute`: h3's container is killed while it runs one;
    once h3 is seen down, h1's agent takes over h3's topic. Every task succeeds exactly once, some on h1, and
    `host list` shows h3 down. (With the default, `wait`, they would wait for an agent of h3.)"""
    app_file, name = _served(hosts, {"slots": ["h1:1", "h3:1"], "task_dist_mode": "HOST-BOUND",
                                     "on_host_down": "reroute", "environments": {"TASK_SLEEP": "1"}})
    h1, victim = hosts.hosts[0], hosts.hosts[2]
    created = scalebox(["app", "create", str(app_file)], kafka_bootstrap, pg_dsn, home=home, timeout=120)
    assert created.code == 0, created.stderr
    try:
        bodies = [f"b{i}" for i in range(6)]
        added = scalebox(["task", "add", "--app-id", name, "--to-host", victim.name, *bodies], kafka_bootstrap,
                         pg_dsn, home=home)
        assert added.code == 0, added.stderr
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            until(f"a task running on {victim.name}", lambda: conn.execute(
                "SELECT 1 FROM task_runs r JOIN tasks t USING (task_id) WHERE t.app = %s AND r.host = %s",
                (name, victim.name)).fetchall(), 60)
        subprocess.run(["docker", "kill", victim.container], capture_output=True, timeout=60)
        tasks = until("every task to succeed", lambda: (ts := list_tasks(kafka_bootstrap, pg_dsn, name)) and
                       all(t["status"] == "succeeded" for t in ts) and len(ts) == len(bodies) and ts, 120)
        assert "h1" in {t["host"] for t in tasks}, "the tasks bound to the dead host ran on h1"
        for task in tasks:
            shown = json.loads(scalebox(["task", "show", task["task_id"], "--json"], kafka_bootstrap, pg_dsn).stdout)
            succeeded = [a for a in shown["attempts_detail"] if a["status"] == "succeeded"]
            assert len(succeeded) == 1, f"task {task['body']} succeeded {len(succeeded)} times"
        logs = scalebox(["logs", name, "--host", "h1"], kafka_bootstrap, pg_dsn, home=home)
        assert f"host(s) {victim.name} seen down: taking over their m tasks" in logs.stdout, logs.stdout[-2000:]
        listed = scalebox(["host", "list", "--app-file", str(app_file), "--json"], kafka_bootstrap, pg_dsn)
        assert {r["host"]: r["status"] for r in json.loads(listed.stdout)}[victim.name] == "down"
        finished = scalebox(["app", "set-finished", "--app-id", name, "done"], kafka_bootstrap, pg_dsn, home=home)
        assert finished.code == 0, finished.stderr
        until("no agent left on h1", lambda: not _agents_of(h1, name), 30)
    finally:
        scalebox(["app", "stop", name], kafka_bootstrap, pg_dsn, home=home)
