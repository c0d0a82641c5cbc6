"""The closest peer: the engine's two-stage /bin/true pipeline on Quix Streams with exactly-once processing,
on the same local Kafka.

    .ci/install-bench-deps.sh    # once: quixstreams in .venv-peers
    .venv/bin/python tests/bench/bench_quix.py [--tasks 2000] [--slots 1,2,4] [--smoke]

Topics `sbx.bench.quix.<tag>.{a,b,done}` (8 partitions each, deleted afterwards with the consumer groups). Stage
a's application consumes `.a`, runs /bin/true in a subprocess and produces to `.b`; stage b's consumes `.b`, runs
/bin/true and produces to `.done` (quix_app.py). Concurrency C = C application processes per stage, each stage one
consumer group. The driver waits until both groups are stable with C members, runs one warm-up record per
partition, then produces N start records (round-robin over the partitions) and counts N records in `.done` with
a read-committed consumer: they are visible only once stage b's transaction committed, as the engine's tasks
count only once terminal in the projection. Throughput = 2N task executions / (first send -> N-th done seen).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import harness
import peers
from confluent_kafka import OFFSET_BEGINNING, Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from harness import say
from peers import PeerResult

from scalebox_stream.kafka.config import admin_config, secured
from scalebox_stream.kafka.topics import ensure_topics

PARTITIONS = 8
COMMIT_INTERVAL_S = 0.25
"""Quix's checkpoint interval (its default is 5 s): exactly-once output is visible downstream only when the
checkpoint's transaction commits, so a long interval holds stage b back at the end of a run; a short one pays
more transactions. Between 0.1 s and 1 s the rate of 400 pipelines did not change beyond the noise."""
LINGER_MS = 0.0
"""The producers' linger.ms, the engine's: a checkpoint flushes the producer before it commits anyway."""


@dataclass(frozen=True)
class QuixTuning:
    """What a Quix run is tuned with (printed next to its number)."""

    commit_interval: float = COMMIT_INTERVAL_S
    partitions: int = PARTITIONS
    linger_ms: float = LINGER_MS


def config_text(slots: int, tuning: QuixTuning) -> str:
    """The configuration printed next to the number."""
    return (f"quixstreams {peers.peer_version('quixstreams')}, processing_guarantee=exactly-once, "
            f"commit_interval={tuning.commit_interval:g}s, consumer_poll_timeout=0.05s, "
            f"{slots} app process(es) per stage (one consumer group each), {tuning.partitions} partitions per topic, "
            "subprocess.run(/bin/true) in sdf.apply, the engine's client settings (fetch.wait.max.ms=50; "
            f"producer retry.backoff.ms=1), producer linger.ms={tuning.linger_ms:g}")


def wait_groups(admin: AdminClient, groups: list[str], members: int, procs: list[subprocess.Popen],
                timeout_s: float = 120.0) -> None:
    """Wait until every group is stable with `members` members (no rebalance lands in the measurement)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = 0
        for future in admin.describe_consumer_groups(groups, request_timeout=10).values():
            try:
                desc = future.result()
            except Exception:
                continue
            if desc.state == ConsumerGroupState.STABLE and len(desc.members) == members:
                ready += 1
        if ready == len(groups):
            return
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a Quix application exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Quix consumer groups {groups} not stable with {members} members "
                               f"after {timeout_s:.0f}s")
        time.sleep(0.5)


def count_done(consumer: Consumer, expected: int, procs: list[subprocess.Popen], timeout_s: float,
               measured: bool) -> float:
    """Read `.done` until `expected` distinct pipelines (warm-up ones if not `measured`, else the measured ones)
    are seen; time.time() then. A pipeline seen twice is an error (exactly-once would be broken)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(seen) < expected:
        for message in consumer.consume(500, 0.05):
            if message.error() is not None:
                continue
            i = json.loads(message.value())["i"]
            if (i >= 0) == measured:
                if i in seen:
                    raise RuntimeError(f"Quix: pipeline {i} done twice")
                seen.add(i)
        if time.monotonic() > deadline:
            raise TimeoutError(f"Quix: {len(seen)}/{expected} pipelines done after {timeout_s:.0f}s")
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a Quix application exited with code {proc.returncode}")
    return time.time()


def run_quix(slots: int, n: int, kafka: str, tuning: QuixTuning = QuixTuning()) -> PeerResult:
    """C processes per stage, a warm-up record per partition, then N pipelines; everything is removed after."""
    prefix = f"sbx.bench.quix.{harness.tag()}"
    topics = [f"{prefix}.a", f"{prefix}.b", f"{prefix}.done"]
    groups = [f"{prefix}.a", f"{prefix}.b"]
    admin = AdminClient(admin_config(kafka))
    workdir = harness.bench_dir("quix")
    procs: list[subprocess.Popen] = []
    consumer: Consumer | None = None
    ok = False
    try:
        ensure_topics(admin, dict.fromkeys(topics, tuning.partitions))
        started = time.time()
        for stage in ("a", "b"):
            for k in range(slots):
                with open(workdir / f"quix-{stage}{k}.log", "ab") as log:
                    procs.append(subprocess.Popen(
                        [str(peers.peers_python()), str(peers.BENCH_DIR / "quix_app.py"), "--broker", kafka,
                         "--prefix", prefix, "--stage", stage, "--partitions", str(tuning.partitions),
                         "--commit-interval", str(tuning.commit_interval), "--linger-ms", str(tuning.linger_ms),
                         "--state-dir", str(workdir / f"state-{stage}{k}")],
                        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                    login = {key: v for key, v in secured({"bootstrap.servers": kafka}).items()
                             if key != "bootstrap.servers" and isinstance(v, str | int | float | bool)}
                    procs[-1].stdin.write(json.dumps(login).encode())  # the login on stdin, never in argv
                    procs[-1].stdin.close()
        consumer = Consumer(secured({"bootstrap.servers": kafka, "group.id": f"{prefix}.driver",
                                     "enable.auto.commit": False, "isolation.level": "read_committed",
                                     "fetch.wait.max.ms": 10, "log_level": 2}))
        consumer.assign([TopicPartition(topics[2], p, OFFSET_BEGINNING) for p in range(tuning.partitions)])
        wait_groups(admin, groups, slots, procs)
        producer = Producer(secured({"bootstrap.servers": kafka, "linger.ms": 5, "log_level": 2}))
        for p in range(tuning.partitions):
            producer.produce(topics[0], key=str(-1 - p), value=json.dumps({"i": -1 - p}), partition=p)
        producer.flush(30)
        count_done(consumer, tuning.partitions, procs, timeout_s=120, measured=False)
        startup_s = time.time() - started
        cpu = peers.CpuMeter()
        cpu.start()
        first_send = time.time()
        for i in range(n):
            producer.produce(topics[0], key=str(i), value=json.dumps({"i": i}), partition=i % tuning.partitions)
            producer.poll(0)
        producer.flush(30)
        send_s = time.time() - first_send
        seen = count_done(consumer, n, procs, timeout_s=max(180.0, n / 5), measured=True)
        cpu.stop()
        wall_s = seen - first_send
        ok = True
        return PeerResult("quix", slots, n, 2 * n, wall_s, 2 * n / wall_s, startup_s,
                          config_text(slots, tuning), send_s, cpu.ms_per_task(2 * n), cpu.by_kind(2 * n))
    finally:
        for proc in procs:
            harness.stop_process_group(proc, grace_s=15)
        if consumer is not None:
            consumer.close()
        harness.forget(kafka, topics=topics, groups=[*groups, f"{prefix}.driver"])
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"  Quix logs kept in {workdir}")


def run(tasks: int, slots: list[int], kafka: str, tuning: QuixTuning = QuixTuning()) -> list[PeerResult]:
    """One Quix run per concurrency, each printed with its configuration."""
    results = []
    for s in slots:
        say(f"  machine {harness.wait_until_idle(timeout_s=10)}")
        result = run_quix(s, tasks, kafka, tuning)
        say("  " + result.line())
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--slots", type=harness.parse_ints, default=[1, 2, 4], help="e.g. 1,2,4")
    parser.add_argument("--commit-interval", type=float, default=COMMIT_INTERVAL_S)
    parser.add_argument("--partitions", type=int, default=PARTITIONS, help="partitions per topic")
    parser.add_argument("--linger-ms", type=float, default=LINGER_MS, help="the applications' producer linger.ms")
    parser.add_argument("--smoke", action="store_true", help="200 pipelines, concurrency 2")
    parser.add_argument("--json", action="store_true")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.tasks, args.slots = 200, [2]
    missing = peers.quix_missing()
    if missing:
        say(f"SKIPPED: {missing} (run .ci/install-bench-deps.sh)")
        return 0
    with harness.sigterm_as_interrupt():
        harness.check_services(args.kafka, args.pg)
        results = run(args.tasks, args.slots, args.kafka,
                      QuixTuning(args.commit_interval, args.partitions, args.linger_ms))
    if args.json:
        print(json.dumps([asdict(r) for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
