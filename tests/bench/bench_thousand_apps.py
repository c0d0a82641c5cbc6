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

Each phase's line is printed as soon as it is measured. `--deadline HH:MM` (UTC) stops running apps at that time
and measures the costs after the apps run so far; SIGTERM stops at once and prints the costs at 0 apps and the
runs' times. Either way the services are stopped and their home deleted.

    python tests/bench/bench_thousand_apps.py              # 1,000 apps (about an hour)
    python tests/bench/bench_thousand_apps.py --apps 30    # a smoke-sized run
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import testpath  # noqa: F401  (tests/ on sys.path)
from harness import EMIT_ARGV, REPO, TRUE, load_average, say, sigterm_as_interrupt, write_app
from long_runs import Local, ok, own_services, parse_deadline, past
from support.homes import broker_settings_on_top

from scalebox_stream.kafka.config import secured

RATIO_GOAL = 1.5
FLOOR_S = 0.2
"""Costs below this are compared against it (a ratio of two tiny numbers is noise)."""
SMOKE_BROKER = {"broker.session.timeout.ms": 2500, "broker.heartbeat.interval.ms": 500}
"""A smoke run's broker settings once it is restarted from here: a broker SIGKILLed and started again waits for
its old registration to expire (9 s by default), which a check that the benchmark works need not wait out."""


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


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
    return timed(lambda: ok(local.scalebox(["run", str(path), "1", "2", "3"],
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

    walls = [timed(lambda: ok(local.scalebox(["status", "--json"]), "status")) for _ in range(3)]
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


def run_apps(local: Local, workdir: Path, n: int, retention: float, deadline: dt.datetime | None,
             runs: list[float]) -> None:
    """Run and finish up to `n` apps in sequence, each one's wall time appended to `runs`, with a progress line
    every tenth. Stops early at the deadline, or on SIGTERM (the KeyboardInterrupt goes on)."""
    began = time.perf_counter()
    try:
        for i in range(n):
            if past(deadline):
                say(f"deadline reached after {i} apps")
                break
            runs.append(run_app(local, workdir, f"app{i:05d}", retention))
            if (i + 1) % max(1, n // 10) == 0:
                say(f"{i + 1}/{n} apps finished; last run {runs[-1]:.2f} s, {time.perf_counter() - began:.0f} s in")
    except KeyboardInterrupt:
        say(f"interrupted after {len(runs)} apps")
        raise


def summary(n: int, retention: float, runs: list[float], before: dict[str, float],
            after: dict[str, float] | None) -> bool:
    """Print the costs at 0 apps and after the apps run (if measured) with their ratios; True if all pass."""
    tenth = max(1, len(runs) // 10)
    first = statistics.median(runs[:tenth]) if runs else float("nan")
    last = statistics.median(runs[-tenth:]) if runs else float("nan")
    reached = "" if len(runs) >= n else f" (stopped early: {len(runs)} of {n})"
    print(f"\nthousand apps: {len(runs)} apps run and finished{reached} (retention {retention:g} s), "
          f"`scalebox run` of one app: first tenth median {first:.2f} s, last tenth {last:.2f} s")
    if after is None:
        print("costs at 0 apps (not measured again after the apps: interrupted): "
              + ", ".join(f"{k} {v:.3f}" for k, v in before.items() if k.endswith(" s")))
        sys.stdout.flush()
        return False
    print(f"broker: {before['topics']:.0f} topics / {before['partitions']:.0f} partitions at 0 apps, "
          f"{after['topics']:.0f} / {after['partitions']:.0f} after {len(runs)}")
    print(f"{'cost':<20}{'0 apps':>10}{f'{len(runs)} apps':>12}{'ratio':>8}  goal <= {RATIO_GOAL}")
    passed_all = True
    rows = [(key, before[key], after[key], ratio, passed) for key, ratio, passed in verdicts(before, after)]
    run_ratio = max(last, FLOOR_S) / max(first, FLOOR_S) if runs else float("nan")
    rows.append(("scalebox run s", first, last, run_ratio, run_ratio <= RATIO_GOAL))
    for key, b, a, ratio, passed in rows:
        passed_all &= passed
        print(f"{key:<20}{b:>10.3f}{a:>12.3f}{ratio:>8.2f}  {'PASS' if passed else 'FAIL'}")
    sys.stdout.flush()
    return passed_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=1000, help="apps to run and finish [1000]")
    parser.add_argument("--retention", type=float, default=0.0,
                        help="SCALEBOX_APP_RETENTION_S for the runs [0: topics go as each app finishes]")
    parser.add_argument("--smoke", action="store_true", help="3 apps (a check that the benchmark works)")
    parser.add_argument("--keep", action="store_true", help="keep the services' home (printed) afterwards")
    parser.add_argument("--deadline", metavar="HH:MM",
                        help="stop running apps at this time (UTC), then measure the costs after those run so far "
                        "(a minute or two more)")
    args = parser.parse_args(argv)
    n = 3 if args.smoke else args.apps
    if args.smoke:
        from scalebox_stream.local import kafka

        kafka.render_properties = broker_settings_on_top(SMOKE_BROKER)
    deadline = parse_deadline(args.deadline)
    say(f"thousand apps: {n} apps, load average {load_average()}, nice {os.nice(0)}")
    before: dict[str, float] | None = None
    runs: list[float] = []
    with sigterm_as_interrupt(), own_services("apps", keep=args.keep) as local:
        workdir = local.home / "apps"
        workdir.mkdir()
        try:
            before = measure(local, workdir, "0 apps")
            run_apps(local, workdir, n, args.retention, deadline, runs)
            after = measure(local, workdir, f"{len(runs)} apps")
        except KeyboardInterrupt:
            if before is None:
                raise
            summary(n, args.retention, runs, before, None)
            return 1
        passed = summary(n, args.retention, runs, before, after)
    return 0 if passed or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
