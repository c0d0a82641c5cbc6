"""Shared-state round trips from inside a task (p50/p99), then operations/s with concurrent callers.

    .venv/bin/python tests/bench/bench_state.py [--calls 2000] [--seconds 20] [--callers 8] [--smoke]

A state owner runs in a child process (`scalebox state-owner`) on topics of the run's own
(`sbx.bench.state.<tag>.*`, deleted at the end). Latency, from inside a task: a real agent (process executor, one
slot, a projection of the run's own) runs tasks whose program (`state_task.py`) calls the in-task `scalebox
semaphore increment-n` tool `--calls` times in a row, timing each call as the task sees it (the tool's start, the
slot's channel, the agent's state client, the owner and back); the goals are judged on these. Next to them, the
part that is the state client's: one client's sequential calls of `increment-n` (the CLI's path minus its
process start). Throughput: `--callers` callers in
`--agents` processes, each process with one client its callers share (as an agent's slots share the agent's: the
in-task tools ask through their agent's client), calling `increment-n` back to back for `--seconds`, each on its
own semaphore (`--same-key`: all on one, so one partition and one owner transaction stream serialize them); the
per-call latencies under that load are reported too. By default two shapes run, one after the other, each with
its own verdict: a process (a client) per caller, as 8 agents of one slot, and 2 processes, as two agents of 4
slots (`--agents 8`, `--agents 2`, or both: `--agents 8,2`). Goals: p50 <= 10 ms, p99 <= 30 ms, >= 2,000
operations/s.
Each shape also prints the machine's CPU per call over its run, split by process kind (the owner, the caller
processes, the broker, anything else: `cpu_kind_of`). The final values are checked against the calls made. Next
to these, in the same run: the agent's own
per-transaction time (its `TransactionalPublisher` committing one record and the consumed offset, back to back,
as an agent commits a task) and the owner's (from its summary when it stops: commands per transaction and the ms
its commits took; `--commit-ms` sets its commit interval).
The goals end the output as PASS/FAIL lines.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cpu_account
import harness
import state_task
from confluent_kafka import Consumer, TopicPartition
from harness import Deployment, pct, say

from scalebox_stream.kafka.config import consumer_config
from scalebox_stream.kafka.transactions import TransactionalPublisher
from scalebox_stream.state.client import StateClient
from scalebox_stream.state.commit import CommitPolicy
from scalebox_stream.state.model import OK, SEMAPHORE, StateTopics

GOAL_P50_MS, GOAL_P99_MS, GOAL_OPS = 10.0, 30.0, 2000.0
APP = "bench"
TASK_PROGRAM = Path(state_task.__file__)
CALLS_PER_TASK, WARM_UP_CALLS = 250, 50
CPU_KINDS = ("owner", "callers", "kafka", "other")
"""Where the machine's CPU goes during a concurrent run (`cpu_kind_of`)."""


def cpu_kind_of(cmdline: str) -> str:
    """The kind of a process during a concurrent run: the owner, the caller processes (spawned by
    multiprocessing), the broker, or anything else (the driver, other work on the machine)."""
    if "state-owner" in cmdline:
        return "owner"
    if "multiprocessing" in cmdline:
        return "callers"
    if "kafka.Kafka" in cmdline:
        return "kafka"
    return "other"


def cpu_per_call(start: cpu_account.CpuSnapshot, end: cpu_account.CpuSnapshot, calls: int) -> dict:
    """Machine CPU ms per call between two snapshots, in total and by `CPU_KINDS`, and how busy the machine was."""
    calls = max(1, calls)
    per = {k: round((end.by_kind.get(k, 0.0) - start.by_kind.get(k, 0.0)) * 1e3 / calls, 3) for k in CPU_KINDS}
    busy, total = end.busy_s - start.busy_s, end.total_s - start.total_s
    return {"machine_ms": round(busy * 1e3 / calls, 3), "busy_pct": round(100 * busy / total, 1) if total else 0.0,
            **per}


def start_owner(kafka: str, topics: StateTopics, log: Path, commit_ms: float | None = None) -> subprocess.Popen:
    """`scalebox state-owner` on the run's topics (committing every `commit_ms`, if given); returns once it was
    assigned its partitions."""
    env = {**os.environ, "SCALEBOX_KAFKA": kafka, "SCALEBOX_STATE_PREFIX": topics.prefix}
    if commit_ms is not None:
        env["SCALEBOX_STATE_COMMIT_MS"] = str(commit_ms)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scalebox_stream.cli.main", "state-owner", "--owner-id",
                                 "bench", "--ephemeral", "-v"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while "assigned partitions" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"state owner did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc


def agent_transactions(kafka: str, topics: StateTopics, n: int) -> dict:
    """The agent's per-transaction time: its publisher commits one record and the consumed offset, `n` times back
    to back (p50 and mean ms), on the run's changelog topic and a group of its own."""
    consumer = Consumer(consumer_config(kafka, f"{topics.group}.agent-txn"))
    publisher = TransactionalPublisher(kafka, f"{topics.group}.agent-txn")
    record = _Record(topics.changelog, b"agent-txn", b"x" * 300, partition=0)
    try:
        times = []
        for i in range(n):
            started = time.perf_counter()
            publisher.publish([record], [TopicPartition(topics.commands, 0, i)], consumer.consumer_group_metadata())
            times.append((time.perf_counter() - started) * 1000)
        return {"transactions": n, "p50_ms": round(pct(times, 50), 2), "mean_ms": round(sum(times) / n, 2)}
    finally:
        consumer.close()


class _Record:
    """One record for the publisher."""

    def __init__(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        self.topic, self.key, self.value, self.headers, self.partition = topic, key, value, None, partition


def owner_summary(log: Path) -> dict:
    """The owner's summary line (printed when it stops): commands per transaction and ms per transaction."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("applied ") and "per transaction" in line:
            words = line.split()
            return {"commands": int(words[1]), "transactions": int(words[4]),
                    "commands_per_txn": float(words[words.index("command(s)", 5) - 1]),
                    "ms_per_txn": float(words[words.index("ms") - 1])}
    return {}


def verdicts(latency: dict, loads: list[dict]) -> list[tuple[str, str, bool]]:
    """(goal, measured, passed) of each goal: the round trip's from inside a task (`latency`), the operations/s
    goal once per shape of the callers."""
    return [(f"in-task round trip p50 <= {GOAL_P50_MS:.0f} ms", f"{latency['p50_ms']} ms",
             latency["p50_ms"] <= GOAL_P50_MS),
            (f"in-task round trip p99 <= {GOAL_P99_MS:.0f} ms", f"{latency['p99_ms']} ms",
             latency["p99_ms"] <= GOAL_P99_MS),
            *((f">= {GOAL_OPS:.0f} ops/s, {shape(load)}", f"{load['ops_per_s']} ops/s", load["ops_per_s"] >= GOAL_OPS)
              for load in loads)]


def shape(load: dict) -> str:
    """How a run's callers were spread: '8 callers, 2 clients (2 agents x 4 slots)'."""
    callers, clients = load["callers"], load["clients"]
    slots = f"{callers // clients}" if callers % clients == 0 else f"{callers / clients:.1f}"
    return f"{callers} callers, {clients} clients ({clients} agents x {slots} slot{'' if slots == '1' else 's'})"


def agent_counts(text: str | None, callers: int) -> list[int]:
    """The --agents shapes: '8,2' -> [8, 2]; default: a client per caller, then 2 clients."""
    counts = harness.parse_ints(text) if text else [callers, 2]
    return list(dict.fromkeys(min(max(1, n), callers) for n in counts))


def summary(times: list[float]) -> dict:
    """p50, p90, p99 and max of round trips (ms), and how many."""
    return {"calls": len(times), "p50_ms": round(pct(times, 50), 2), "p90_ms": round(pct(times, 90), 2),
            "p99_ms": round(pct(times, 99), 2), "max_ms": round(max(times), 2)}


def in_task(kafka: str, pg: str, topics: StateTopics, calls: int, directory: Path) -> list[float]:
    """Round trips (ms) of `calls` in-task `increment-n` calls, as the tasks' program timed them (after a first
    task of `WARM_UP_CALLS`, unmeasured): an agent of one slot runs tasks of `CALLS_PER_TASK` calls one after
    another, on the run's state topics. Checks the semaphore's final value against the calls made."""
    os.environ["SCALEBOX_STATE_PREFIX"] = topics.prefix  # the agent's state client, and so the tasks', use them
    app_file = directory / "app.yaml"
    app_file.write_text(f"name: bench-state-{harness.tag()}\nmodules:\n  call:\n    executor: process\n"
                        f"    command: [{json.dumps(sys.executable)}, {json.dumps(str(TASK_PROGRAM))}]\n"
                        "    slots: 1\n    environments: {SEMAPHORE_AUTO_CREATE: 'yes'}\n")
    deployment = Deployment(app_file, kafka, pg, directory / "intask", directory / "work")
    try:
        deployment.start(slots=1)
        deployment.send("call", [str(WARM_UP_CALLS)])
        deployment.wait_terminal(1, timeout_s=120)
        measured = deployment.send("call", [str(min(CALLS_PER_TASK, calls - i))
                                            for i in range(0, calls, CALLS_PER_TASK)])
        deployment.wait_terminal(1 + len(measured), timeout_s=120 + calls * 0.1)
        outs = deployment.query("SELECT custom_out FROM tasks WHERE app = %s AND task_id = ANY(%s::uuid[])",
                                deployment.app, measured)
        times = [float(t) for (out,) in outs for t in (out or "").split()]
        assert len(times) == calls, f"{len(times)} round trips timed for {calls} calls"
        with StateClient(kafka, topics) as client:
            value = client.call(client.command("get", SEMAPHORE, deployment.app, state_task.NAME)).value
        assert value == WARM_UP_CALLS + calls, f"{state_task.NAME}: {value} != {WARM_UP_CALLS + calls} calls"
        return times
    finally:
        deployment.close()


def sequential(kafka: str, topics: StateTopics, calls: int) -> list[float]:
    """Round trips (ms) of one client's `calls` sequential increment-n calls (after 50 unmeasured ones)."""
    with StateClient(kafka, topics) as client:
        for _ in range(50):
            client.call(client.command("add", SEMAPHORE, APP, "latency", n=1, auto_create=True))
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            reply = client.call(client.command("add", SEMAPHORE, APP, "latency", n=1, auto_create=True))
            times.append((time.perf_counter() - started) * 1000)
            assert reply.code == OK, reply
        return times


def caller(args: tuple[str, StateTopics, list[str], float, multiprocessing.Barrier]
           ) -> list[tuple[str, int, list[float]]]:
    """One caller process, as an agent: one state client shared by a thread per name (its slots), each calling
    increment-n back to back for `seconds`; (name, calls, round trips in ms) per thread."""
    kafka, topics, names, seconds, barrier = args
    with StateClient(kafka, topics) as client:
        for name in set(names):
            client.call(client.command("add", SEMAPHORE, APP, name, n=0, auto_create=True))
        barrier.wait()
        deadline = time.monotonic() + seconds
        out: list[tuple[str, int, list[float]]] = []

        def slot(name: str) -> None:
            times = []
            while time.monotonic() < deadline:
                started = time.perf_counter()
                reply = client.call(client.command("add", SEMAPHORE, APP, name, n=1, auto_create=True))
                times.append((time.perf_counter() - started) * 1000)
                assert reply.code == OK, reply
            out.append((name, len(times), times))

        threads = [threading.Thread(target=slot, args=(name,)) for name in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out


def concurrent(kafka: str, topics: StateTopics, callers: int, seconds: float, same_key: bool,
               agents: int | None = None) -> dict:
    """Operations/s of `callers` calling for `seconds`, spread over `agents` processes of one client each (default:
    a process per caller); checks the final values."""
    agents = min(agents or callers, callers)
    ctx = multiprocessing.get_context("spawn")
    names = [f"shared-{agents}" if same_key else f"caller-{agents}-{i}" for i in range(callers)]  # a shape's own
    groups = [names[i::agents] for i in range(agents)]
    with ctx.Manager() as manager:
        barrier = manager.Barrier(agents + 1)
        with ctx.Pool(agents) as pool:
            pending = pool.map_async(caller, [(kafka, topics, group, seconds, barrier) for group in groups])
            barrier.wait()
            started, cpu_start = time.monotonic(), cpu_account.snapshot(cpu_kind_of)
            results = [r for rs in pending.get(seconds + 120) for r in rs]
            elapsed, cpu_end = time.monotonic() - started, cpu_account.snapshot(cpu_kind_of)  # callers still live
    total = sum(n for _, n, _ in results)
    times = [t for _, _, ts in results for t in ts]
    expected: dict[str, int] = {}
    for name, n, _ in results:
        expected[name] = expected.get(name, 0) + n
    with StateClient(kafka, topics) as client:
        for name, n in expected.items():
            value = client.call(client.command("get", SEMAPHORE, APP, name)).value
            assert value == n, f"{name}: {value} != {n} calls"
    return {"callers": callers, "clients": agents, "calls": total, "seconds": round(elapsed, 2),
            "ops_per_s": round(total / elapsed, 1), "p50_ms": round(pct(times, 50), 2),
            "p99_ms": round(pct(times, 99), 2), "same_key": same_key, "cpu": cpu_per_call(cpu_start, cpu_end, total)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_service_args(parser)
    parser.add_argument("--calls", type=int, default=2000, help="Calls in a row for the latency, from inside a task "
                                                               "and from one client (default 2000).")
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of the concurrent run (default 20).")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--same-key", action="store_true", help="Every caller on one semaphore.")
    parser.add_argument("--agents", default=None, help="Caller processes, each with one state client its callers "
                                                       "share, as an agent's slots share the agent's; a comma "
                                                       "list runs each (default: one per caller, then 2).")
    parser.add_argument("--partitions", type=int, default=None, help="Command and changelog partitions "
                                                                     "(default: the service's).")
    parser.add_argument("--reply-partitions", type=int, default=None, help="Reply partitions (default: the "
                                                                           "service's).")
    parser.add_argument("--commit-ms", type=float, default=None, help="The owner's commit interval (default: "
                                                                      "the owner's, SCALEBOX_STATE_COMMIT_MS).")
    parser.add_argument("--smoke", action="store_true", help="200 sequential calls, a 5 s concurrent run.")
    parser.add_argument("--json", action="store_true", help="Print the results as one JSON line.")
    args = parser.parse_args(argv)
    calls, seconds = (200, 5.0) if args.smoke else (args.calls, args.seconds)
    transactions = 200 if args.smoke else 1000
    defaults = StateTopics()
    topics = StateTopics(f"sbx.bench.state.{harness.tag()}", args.partitions or defaults.partitions,
                         args.reply_partitions or defaults.reply_partitions)
    directory = harness.bench_dir("state")
    commit_ms = args.commit_ms if args.commit_ms is not None else CommitPolicy.from_env().interval_s * 1000
    say(f"state topics {topics.prefix}; owner log in {directory}; the owner commits every {commit_ms:g} ms; "
        f"load {harness.load_average()}")
    topics.ensure(args.kafka)
    owner_log = directory / "owner.log"
    owner = start_owner(args.kafka, topics, owner_log, args.commit_ms)
    try:
        with harness.sigterm_as_interrupt():
            say(harness.wait_until_idle(timeout_s=5 if args.smoke else 60))
            latency = summary(in_task(args.kafka, args.pg, topics, calls, directory))
            say(f"round trip from inside a task, {calls} in-task increment-n calls in a row: p50 "
                f"{latency['p50_ms']} ms (goal <= {GOAL_P50_MS}), p90 {latency['p90_ms']} ms, p99 "
                f"{latency['p99_ms']} ms (goal <= {GOAL_P99_MS}), max {latency['max_ms']} ms")
            client = summary(sequential(args.kafka, topics, calls))
            say(f"  of which the state client's call (one client, {calls} sequential calls): p50 {client['p50_ms']} "
                f"ms, p90 {client['p90_ms']} ms, p99 {client['p99_ms']} ms, max {client['max_ms']} ms")
            loads = []
            for agents in agent_counts(args.agents, args.callers):
                load = concurrent(args.kafka, topics, args.callers, seconds, args.same_key, agents)
                loads.append(load)
                say(f"{shape(load)}{', on one semaphore' if args.same_key else ''}: "
                    f"{load['calls']} calls in {load['seconds']} s = {load['ops_per_s']} ops/s "
                    f"(goal >= {GOAL_OPS:.0f}); round trip under load p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms")
                cpu = load["cpu"]
                say(f"  machine CPU per call {cpu['machine_ms']} ms ({cpu['busy_pct']}% busy): "
                    + "  ".join(f"{k} {cpu[k]}" for k in CPU_KINDS))
            agent = agent_transactions(args.kafka, topics, transactions)
            say(f"the agent's own transactions (one record and an offset), {transactions} back to back: "
                f"p50 {agent['p50_ms']} ms, mean {agent['mean_ms']} ms")
    finally:
        harness.stop_process_group(owner)
        harness.forget(args.kafka, topics=[topics.commands, topics.changelog, topics.replies],
                       groups=[topics.group, f"{topics.group}.agent-txn"])
    owner_txn = owner_summary(owner_log)
    if owner_txn:
        say(f"the owner's transactions over the run: {owner_txn['transactions']} for {owner_txn['commands']} "
            f"commands, {owner_txn['commands_per_txn']} commands and {owner_txn['ms_per_txn']} ms per transaction")
    results = verdicts(latency, loads)
    for goal, measured, passed in results:
        print(f"{goal:<58} {measured:<14} {'PASS' if passed else 'FAIL'}")
    if args.json:
        print(json.dumps({"latency": latency, "client_latency": client, "concurrent": loads, "agent_txn": agent,
                          "owner_txn": owner_txn,
                          "pass": all(passed for _, _, passed in results)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
