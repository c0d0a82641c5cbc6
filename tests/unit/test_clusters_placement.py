"""Cluster definitions, the placement plan of a run, and the SSH/Slurm commands that start agents."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from scalebox_stream import __version__
from scalebox_stream.kafka.presence import Presence
from scalebox_stream.launch import ssh
from scalebox_stream.launch.hosts import host_rows
from scalebox_stream.launch.placement import (
    AgentPlan,
    PlacementError,
    StartedAgent,
    plan_agents,
    read_record,
    write_record,
)
from scalebox_stream.launch.slurm import sbatch_argv
from scalebox_stream.spec import parse_app
from scalebox_stream.spec.cluster import (
    ClusterError,
    HostDef,
    home_clusters,
    local_cluster,
    parse_cluster,
    resolve_cluster,
)

INLINE = """
name: demo
modules:
  router: {command: /bin/true, sink_modules: [calc]}
  calc: {command: /bin/true, slots: [h1:2, 'n-0[0-1]:1', gpu]}
clusters:
  local:
    parameters: {base_data_dir: /data, uname: sbx, port: 2222, kafka_bootstrap: 'k1:9092,k2:9092'}
    hosts:
      h0: {role: head}
      h1: {ip_addr: 10.0.0.1, parameters: {port: 22}}
      n-00: {ip_addr: 10.0.0.2, parameters: {agent_start: slurm, slurm_node: node7}}
      n-01: {ip_addr: 10.0.0.3, parameters: {group_id: gpu}}
"""


def _app(text: str = INLINE, tmp_path: Path | None = None):
    directory = Path(tmp_path or "/tmp")
    return parse_app(text, file="app.yaml", app_dir=directory, source=directory / "app.yaml")


def test_a_scalebox_cluster_definition_names_hosts_and_how_to_reach_them(tmp_path: Path) -> None:
    app = _app(tmp_path=tmp_path)
    cluster = resolve_cluster("local", tmp_path, app.clusters)
    assert list(cluster.hosts) == ["h0", "h1", "n-00", "n-01"] and cluster.head == "h0"
    h1, n00 = cluster.hosts["h1"], cluster.hosts["n-00"]
    assert (h1.start, h1.target, h1.port, h1.kafka) == ("ssh", "sbx@10.0.0.1", 22, "k1:9092,k2:9092")
    assert (n00.start, n00.port, n00.slurm_node) == ("slurm", 2222, "node7"), "cluster parameters are defaults"
    assert cluster.hosts["h0"].start == "local" and cluster.base_data_dir == "/data"


def test_plan_puts_each_entry_on_the_hosts_it_names(tmp_path: Path) -> None:
    app = _app(tmp_path=tmp_path)
    plan = plan_agents(app, resolve_cluster("local", tmp_path, app.clusters), ["router", "calc"])
    assert plan == [AgentPlan("router", "h0", 1, "local", True), AgentPlan("calc", "h1", 2, "ssh", False),
                    AgentPlan("calc", "n-00", 1, "slurm", False), AgentPlan("calc", "n-01", 2, "ssh", False)]


def test_an_entry_naming_no_host_is_refused_and_no_definition_keeps_one_local_agent(tmp_path: Path) -> None:
    app = _app(INLINE.replace("gpu]", "gpu, h9]"), tmp_path)
    with pytest.raises(PlacementError, match="slots entry 'h9' names no host of cluster 'local'"):
        plan_agents(app, resolve_cluster("local", tmp_path, app.clusters), ["calc"])
    plain = _app("name: p\nmodules:\n  calc: {command: /bin/true, slots: [h0:3, h5:2]}\n", tmp_path)
    assert plan_agents(plain, resolve_cluster("local", tmp_path, plain.clusters), ["calc"]) == [
        AgentPlan("calc", "h0", 3, "local", True)], "without a cluster definition: this machine, as before"


def test_home_cluster_files_and_the_app_file_override(tmp_path: Path) -> None:
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "lab.yaml").write_text(
        "clusters:\n  lab:\n    hosts:\n      head: {role: head}\n      w1: {ip_addr: 10.1.0.1}\n")
    assert list(home_clusters(tmp_path)["lab"].hosts) == ["head", "w1"]
    assert resolve_cluster("lab", tmp_path).head == "head"
    assert resolve_cluster("lab", tmp_path, {"lab": {"hosts": {"x": {}}}}).hosts.keys() == {"h0", "x"}
    assert resolve_cluster("other", tmp_path) == local_cluster("other")
    with pytest.raises(ClusterError, match=r"clusters.lab.hosts.x: .*port"):
        parse_cluster("lab", {"hosts": {"x": {"parameters": {"port": 0}}}}, "f")
    with pytest.raises(ClusterError, match="more than one host has role: head"):
        parse_cluster("lab", {"hosts": {"a": {"role": "head"}, "b": {"role": "head"}}}, "f")


def test_the_ssh_start_script_checks_the_version_and_detaches_each_agent() -> None:
    host = HostDef(name="h1", address="10.0.0.1", user="root", port=2200, ssh_options=("IdentityFile=/k",),
                   scalebox_command="/opt/sbx/bin/scalebox")
    argv = ssh.ssh_argv(host, "true")
    assert argv[0] == "ssh" and "BatchMode=yes" in argv and "IdentityFile=/k" in argv
    assert argv[-3:] == ["2200", "root@10.0.0.1", "true"]
    script = ssh.start_script(host, "$HOME/logs", [ssh.RemoteAgent("agent-calc@h1", ["agent", "--app", "a b"],
                                                                   {"SCALEBOX_KAFKA": "k:1"})])
    assert f'"scalebox-stream {ssh.compatible_prefix()}"*' in script
    assert "env SCALEBOX_KAFKA=k:1 setsid nohup /opt/sbx/bin/scalebox agent --app 'a b' >" in script
    assert ssh.compatible_prefix("1.22.3") == "1.22." and __version__.startswith(ssh.compatible_prefix())


def test_the_ssh_scripts_run_under_posix_sh(tmp_path: Path) -> None:
    """The start script run by a local `sh` (standing in for the remote shell) with a fake `scalebox`."""
    fake = tmp_path / "scalebox"
    fake.write_text(f'#!/bin/sh\n[ "$1" = version ] && {{ echo "scalebox-stream {__version__}"; exit 0; }}\n'
                    'echo "$SCALEBOX_KAFKA $*"; sleep 30\n')
    fake.chmod(0o755)
    host = HostDef(name="h1", scalebox_command=str(fake))
    agent = ssh.RemoteAgent("a1", ["agent", "x"], {"SCALEBOX_KAFKA": "k:1"})
    script = ssh.start_script(host, str(tmp_path / "logs"), [agent])
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    pid, log = out.stdout.split()
    deadline = time.monotonic() + 10
    while not Path(log).read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Path(log).read_text() == "k:1 agent x\n"
    assert Path(f"/proc/{pid}").exists(), "the agent outlives the shell that started it"
    subprocess.run(["sh", "-c", ssh.stop_script([pid], 2.0)], timeout=10, check=True)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    old = tmp_path / "old"
    old.write_text('#!/bin/sh\necho "scalebox-stream 0.0.1"\n')
    old.chmod(0o755)
    bad = subprocess.run(["sh", "-c", ssh.start_script(HostDef(name="h", scalebox_command=str(old)), "/tmp", [])],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == ssh.VERSION_MISMATCH and bad.stdout.strip() == "scalebox-stream 0.0.1"


def test_sbatch_puts_the_environment_in_the_command() -> None:
    host = HostDef(name="n-00", start="slurm", slurm_node="node7", slurm_options=("--partition", "debug"))
    argv = sbatch_argv(host, "sbx-a-calc-n-00", ["agent", "--host", "n-00"], {"SCALEBOX_KAFKA": "a:1,b:2"}, "/l")
    assert argv[:6] == ["sbatch", "--parsable", "--job-name", "sbx-a-calc-n-00", "--output", "/l"]
    assert argv[-5:-2] == ["node7", "--partition", "debug"]
    assert argv[-1] == "exec env SCALEBOX_KAFKA=a:1,b:2 scalebox agent --host n-00"


def test_host_rows_up_down_idle_from_presence(tmp_path: Path) -> None:
    cluster = parse_cluster("c", {"hosts": {"h1": {}, "h2": {}, "h3": {}, "h4": {}}}, "f")
    board = [Presence("a", "calc", "h1", "running", 100.0), Presence("a", "calc", "h2", "running", 60.0),
             Presence("a", "calc", "h3", "stopped", 90.0), Presence("a", "calc", "h2", "stopped", 50.0)]
    rows = {r.host: r for r in host_rows(cluster, board, now_s=101.0)}
    assert (rows["h1"].status, rows["h1"].agents, rows["h1"].heartbeat_age_s) == ("up", ("a/calc",), 1.0)
    assert (rows["h2"].status, rows["h2"].heartbeat_age_s) == ("down", 41.0), "gone quiet without stopping"
    assert rows["h3"].status == "idle" and rows["h4"].status == "unknown" and rows["h0"].start == "local"


def test_the_run_record_keeps_the_cluster_and_agents(tmp_path: Path) -> None:
    cluster = parse_cluster("c", {"hosts": {"h1": {"ip_addr": "10.0.0.1"}}}, "f")
    agents = [StartedAgent("calc", "h1", "ssh", "/root/.scalebox/logs/a/agent-calc@h1.log", "42")]
    write_record(tmp_path, agents, cluster)
    assert read_record(tmp_path) == (cluster, agents)
    assert read_record(tmp_path / "none") == (None, [])


def test_app_create_refuses_a_host_list_naming_no_host_before_deploying(tmp_path: Path) -> None:
    from scalebox_stream.config import CliSettings, Connections
    from scalebox_stream.launch.errors import OperationError
    from scalebox_stream.launch.serve import create_app

    app = _app(INLINE.replace("gpu]", "gpu, h9]"), tmp_path)
    deployed: list[str] = []
    with pytest.raises(OperationError, match="names no host") as raised:
        create_app(app, tmp_path / "app.yaml", (), CliSettings(home=tmp_path), Connections("k:9092", "pg"),
                   deploy_app=lambda spec, *_: deployed.append(spec.name))
    assert raised.value.code == 2 and deployed == []


def test_the_server_waits_for_remote_agents_that_stop_by_themselves(tmp_path: Path, monkeypatch) -> None:
    from scalebox_stream.launch import remote

    app = _app(tmp_path=tmp_path)
    agents = remote.RemoteAgents(resolve_cluster("local", tmp_path, app.clusters), "demo", tmp_path, "k:9092")
    agents.started = [StartedAgent("calc", "h1", "ssh", "/l1", "11"), StartedAgent("calc", "h1", "ssh", "/l2", "12"),
                      StartedAgent("calc", "n-00", "slurm", "/l3", "77")]
    alive = {"h1": {"11", "12"}, "jobs": {"77"}}
    asked: list[str] = []

    def running(host, pids):
        asked.append(host.name)
        found = set(alive["h1"]) & set(pids)
        alive["h1"].discard("12")  # one ends after the first look, the other never
        return found

    monkeypatch.setattr(remote.ssh, "running", running)
    monkeypatch.setattr(remote.slurm, "queued", lambda jobs: alive["jobs"] & set(jobs))
    assert not agents.wait_gone(0.0)
    assert [a.ref for a in agents.started] == ["11", "12", "77"]
    alive["jobs"].clear()
    assert not agents.wait_gone(0.0) and [a.ref for a in agents.started] == ["11"]
    alive["h1"].clear()
    assert agents.wait_gone(1.0, poll_s=0.01) and agents.started == []
    assert set(asked) == {"h1"}


def test_a_child_agent_that_ended_cleanly_is_no_failure(tmp_path: Path) -> None:
    import sys

    from scalebox_stream.launch.children import Child, Children
    from scalebox_stream.policy.restarts import NEVER_RESTART

    children = Children(tmp_path, {}, NEVER_RESTART)

    def ended(name: str, code: int) -> Child:
        process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
        process.wait()
        return Child(name, process, tmp_path / f"{name}.log")

    children.children = [ended("agent-calc@h1", 0)]
    assert children.first_dead() is not None and children.supervise() == []
    children.children.append(ended("agent-router", 3))
    with pytest.raises(RuntimeError, match="^agent-router exited with code 3, not restarted"):
        children.supervise()
    children.children = [ended("projector", 0)]
    with pytest.raises(RuntimeError, match="^projector exited with code 0"):
        children.supervise()  # the projector never ends by itself
