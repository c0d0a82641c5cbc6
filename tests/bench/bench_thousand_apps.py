"""A thousand apps: deploy, run and finish N small apps in sequence, then measure what a user waits for.

Measured at 0 apps and again after N, on a Kafka and a PostgreSQL of their own (a fresh SCALEBOX_HOME and
free ports, started with `scalebox local up`), so the broker can be stopped and killed without touching
anybody else's:

- broker start: `local down` (a clean stop) and the broker started again, until it answers;
- broker recovery: the broker SIGKILLed and started again, until it answers (it checks its logs first);
- agent start: an agent started for a fresh one-task app until that task is finished in the projection;
- `scalebox status`: the command's wall time (Python's start included) and its query alone.

Every app is run by `scalebox run` (two process modules, three tasks), which deletes the finished apps' task
topics and consumer groups when their retention has passed (`--retention`, default 0: at once; the product's
default is an hour, so the broker holds the apps of the last hour). PASS: each cost after N apps is at most
1.5 x the cost at 0 apps (below a floor of 0.2 s a ratio is noise and passes).

    python tests/bench/bench_thousand_apps.py              # 1,000 apps (about an hour)
    python tests/bench/bench_thousand_apps.py --apps 30    # a smoke-sized run
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import testpath  # noqa: F401  (tests/ on sys.path)
from harness import EMIT_ARGV, REPO, TRUE, say, write_app
from support.homes import share_kafka_jars

from scalebox_stream.kafka.config import secured

RATIO_GOAL = 1.5
FLOOR_S = 0.2
"""Costs below this are compared against it (a ratio of two tiny numbers is noise)."""
SMOKE_BROKER = {"broker.session.timeout.ms": 2500, "broker.heartbeat.interval.ms": 500}
"""A smoke run's broker settings once it is restarted from here: a broker SIGKILLed and started again waits for
its old registration to expire (9 s by default), which a check that the benchmark works need not wait out."""


@dataclass(frozen=True)
class Local:
    """A Kafka and a PostgreSQL of the benchmark's own, in `home`."""

    home: Path
    kafka: str
    pg: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SCALEBOX_KAFKA", "SCALEBOX_PG")}
        return {**env, "SCALEBOX_HOME": str(self.home)}

    def scalebox(self, args: list[str], timeout: float = 600, extra: dict[str, str] | None = None,
                 services: bool = True) -> subprocess.CompletedProcess:
        env = {**self.env(), **(extra or {})}
        if services:
            env.update({"SCALEBOX_KAFKA": self.kafka, "SCALEBOX_PG": self.pg})
        return subprocess.run([sys.executable, "-m", "scalebox_stream.cli.main", *args], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=REPO)


def start_local(home: Path) -> Local:
    """`scalebox local up` in `home` on free ports; its endpoints. This process's SCALEBOX_HOME becomes
    `home` too (the broker is stopped and started from here)."""
    os.environ["SCALEBOX_HOME"] = str(home)
    ports = ["--kafka-port", str(free_port()), "--controller-port", str(free_port()), "--pg-port", str(free_port()),
             "--internal-port", str(free_port())]
    proc = Local(home, "", "").scalebox(["local", "up", *ports], services=False)
    if proc.returncode != 0:
        raise RuntimeError(f"local up failed:\n{proc.stderr}")
    lines = dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
    local = Local(home, lines["kafka bootstrap"].strip(), lines["postgres dsn"].strip())
    _ok(local.scalebox(["projector", "--until-caught-up"]), "projector")  # the projection's tables
    return local


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _ok(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _broker_settings(extra: dict[str, int]) -> None:
    """Every broker this process starts from now on gets `extra` on top of the product's settings."""
    from scalebox_stream.local import kafka

    render = kafka.render_properties
    kafka.render_properties = lambda port, controller_port, data_dir, overrides=None: render(
        port, controller_port, data_dir, {**(overrides or {}), **extra})


def broker_start_s(local: Local) -> float:
    """A clean stop (SIGTERM: a controlled shutdown), then the broker started until it answers."""
    from scalebox_stream.local import kafka

    info = kafka.running()
    assert info is not None, "the benchmark's broker is not running"
    kafka.stop()
    return timed(lambda: kafka.start(info.port, info.controller_port, stall_s=600, internal_port=info.internal_port))


def broker_recovery_s(local: Local) -> float:
    """The broker SIGKILLed, then started until it answers (it checks its logs after an unclean stop)."""
    from scalebox_stream.local import kafka

    info = kafka.running()
    assert info is not None, "the benchmark's broker is not running"
    os.kill(info.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and kafka.running() is not None:
        time.sleep(0.05)
    return timed(lambda: kafka.start(info.port, info.controller_port, stall_s=600, internal_port=info.internal_port))


def app_file(workdir: Path, name: str, one_module: bool = False) -> Path:
    modules = [("b", [TRUE], None)] if one_module else [("a", EMIT_ARGV, "b"), ("b", [TRUE], None)]
    return write_app(workdir / f"{name}.yaml", name, modules, slots=1)


def run_app(local: Local, workdir: Path, name: str, retention: float) -> float:
    """`scalebox run` of a two-module app with three tasks; its wall time."""
    path = app_file(workdir, name)
    return timed(lambda: _ok(local.scalebox(["run", str(path), "1", "2", "3"],
                                            extra={"SCALEBOX_APP_RETENTION_S": f"{retention:g}"}), f"run {name}"))


def agent_start_s(local: Local, workdir: Path, name: str) -> float:
    """A projector already running and a fresh one-task app deployed: seconds from starting its agent until
    the task is finished in the projection."""
    import psycopg
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    from scalebox_stream.events import EventCodec
    from scalebox_stream.kafka.config import admin_config, producer_config
    from scalebox_stream.kafka.task_publisher import flush_or_fail, publish_task
    from scalebox_stream.kafka.topics import ensure_app_topics
    from scalebox_stream.launch.deploy import deploy
    from scalebox_stream.spec import load_app

    path = app_file(workdir, name, one_module=True)
    ensure_app_topics(AdminClient(admin_config(local.kafka)), name, ["b"])
    deploy(load_app(path), (), local.kafka, local.pg)
    producer = Producer(producer_config(local.kafka, log_level=2))
    publish_task(producer, EventCodec(), name, "b", "x", producer_id="bench")
    flush_or_fail(producer)
    env = {**local.env(), "SCALEBOX_KAFKA": local.kafka, "SCALEBOX_PG": local.pg}
    spawn = [sys.executable, "-m", "scalebox_stream.cli.main"]
    projector = subprocess.Popen([*spawn, "projector"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    agent = None
    try:
        with psycopg.connect(local.pg, autocommit=True) as conn:
            _wait(lambda: conn.execute("SELECT count(*) FROM tasks WHERE app = %s", (name,)).fetchone()[0] == 1)
            started = time.perf_counter()
            agent = subprocess.Popen([*spawn, "agent", "--app", name, "--module", "b", "--app-file", str(path),
                                      "--work-root", str(workdir / "work")], env=env, cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            _wait(lambda: conn.execute("SELECT count(*) FROM tasks WHERE app = %s AND status = 'succeeded'",
                                       (name,)).fetchone()[0] == 1)
            return time.perf_counter() - started
    finally:
        for proc in (agent, projector):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
        local.scalebox(["app", "clean", name, "--force"])


def _wait(ready: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError("not ready in time")
        time.sleep(0.02)


def status_s(local: Local) -> tuple[float, float]:
    """`scalebox status`: the median wall time of 3 calls, and the median time of its query alone."""
    from scalebox_stream.launch.views import status_view

    walls = [timed(lambda: _ok(local.scalebox(["status", "--json"]), "status")) for _ in range(3)]
    queries = [timed(lambda: status_view(local.pg, None)) for _ in range(5)]
    return statistics.median(walls), statistics.median(queries)


def broker_topics(local: Local) -> dict[str, int]:
    """Every topic on the broker with its partition count."""
    from confluent_kafka.admin import AdminClient

    topics = AdminClient(secured({"bootstrap.servers": local.kafka})).list_topics(timeout=30).topics
    return {name: len(t.partitions) for name, t in topics.items()}


def measure(local: Local, workdir: Path, label: str) -> dict[str, float]:
    topics = broker_topics(local)
    status_wall, status_query = status_s(local)
    costs = {"broker start s": broker_start_s(local), "broker recovery s": broker_recovery_s(local)}
    costs |= {"agent start s": agent_start_s(local, workdir, f"probe-{label.split()[0]}-{os.getpid()}"),
             "status s": status_wall, "status query s": status_query,
             "topics": float(len(topics)), "partitions": float(sum(topics.values()))}
    shown = sorted(topics.items())[:12]
    say(f"{label}: topics " + ", ".join(f"{name} ({n})" for name, n in shown)
        + (f" and {len(topics) - len(shown)} more" if len(topics) > len(shown) else ""))
    say(f"{label}: " + ", ".join(f"{k} {v:.3f}" if k.endswith(" s") else f"{k} {v:.0f}" for k, v in costs.items()))
    return costs


def verdicts(before: dict[str, float], after: dict[str, float]) -> list[tuple[str, float, bool]]:
    """(cost, ratio after/before, PASS) for every timed cost, each floored at FLOOR_S."""
    out = []
    for key in before:
        if key.endswith(" s"):
            ratio = max(after[key], FLOOR_S) / max(before[key], FLOOR_S)
            out.append((key, ratio, ratio <= RATIO_GOAL))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=1000, help="apps to run and finish [1000]")
    parser.add_argument("--retention", type=float, default=0.0,
                        help="SCALEBOX_APP_RETENTION_S for the runs [0: topics go as each app finishes]")
    parser.add_argument("--smoke", action="store_true", help="3 apps (a check that the benchmark works)")
    parser.add_argument("--keep", action="store_true", help="keep the services' home (printed) afterwards")
    args = parser.parse_args(argv)
    n = 3 if args.smoke else args.apps
    if args.smoke:
        _broker_settings(SMOKE_BROKER)
    home = share_kafka_jars(Path(tempfile.mkdtemp(prefix="sbx-bench-apps-")))
    workdir = home / "apps"
    workdir.mkdir()
    say(f"services of their own in {home}")
    local = start_local(home)
    try:
        before = measure(local, workdir, "0 apps")
        runs: list[float] = []
        began = time.perf_counter()
        for i in range(n):
            runs.append(run_app(local, workdir, f"app{i:05d}", args.retention))
            if (i + 1) % max(1, n // 10) == 0:
                say(f"{i + 1}/{n} apps finished; last run {runs[-1]:.2f} s, {time.perf_counter() - began:.0f} s in")
        after = measure(local, workdir, f"{n} apps")
        tenth = max(1, n // 10)
        first, last = statistics.median(runs[:tenth]), statistics.median(runs[-tenth:])
        print(f"\nthousand apps: {n} apps run and finished (retention {args.retention:g} s), "
              f"`scalebox run` of one app: first tenth median {first:.2f} s, last tenth {last:.2f} s")
        print(f"broker: {before['topics']:.0f} topics / {before['partitions']:.0f} partitions at 0 apps, "
              f"{after['topics']:.0f} / {after['partitions']:.0f} after {n}")
        print(f"{'cost':<20}{'0 apps':>10}{f'{n} apps':>12}{'ratio':>8}  goal <= {RATIO_GOAL}")
        ok = True
        for key, ratio, passed in [*verdicts(before, after),
                                   ("scalebox run s", max(last, FLOOR_S) / max(first, FLOOR_S), False)]:
            if key == "scalebox run s":
                passed = ratio <= RATIO_GOAL
                b, a = first, last
            else:
                b, a = before[key], after[key]
            ok &= passed
            print(f"{key:<20}{b:>10.3f}{a:>12.3f}{ratio:>8.2f}  {'PASS' if passed else 'FAIL'}")
        return 0 if ok or args.smoke else 1
    finally:
        local.scalebox(["local", "down"], services=False)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(home)], check=False)


if __name__ == "__main__":
    sys.exit(main())
