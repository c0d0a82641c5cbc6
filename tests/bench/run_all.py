"""Every benchmark of issue 23 (engine speed, latency, the peers at their best): one command, one summary table.

    .venv/bin/python tests/bench/run_all.py [--smoke] [--peers quix,celery-redis,celery-pg,ray] [--profile] [--json]

1. bench_engine: two-stage no-op pipeline, tasks/s at slots 1, 2, 4 vs raw /bin/true spawns/s (goal >= 0.6), and
   the machine's CPU per task execution at slots 4 (goal <= 1.5 ms)
2. bench_latency: one task through three modules (goals p50 <= 15 ms, p99 <= 40 ms) vs three raw spawns
3. the peers at their best on the same pipeline, same concurrency: Quix Streams (exactly-once), Celery with a
   Redis and with a PostgreSQL result backend, Ray tasks (goal: engine >= 2x the best peer at every concurrency)

Goals are reported, never asserted: the exit code is 0 when every benchmark ran to completion and non-zero
on errors (a service down, a child that died, a timeout). `--smoke` is a short version of each (1-3 minutes
on the 2-core development VM), meant for CI; it leaves Ray out (its wheel is large and its start slow). A peer
whose dependencies are missing is skipped, loudly (.ci/install-bench-deps.sh installs them; `--ray` adds Ray).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

import bench_celery
import bench_engine
import bench_latency
import bench_quix
import bench_ray
import harness
import peers
from harness import Row, say
from peers import PeerResult

PEERS = ("quix", "celery-redis", "celery-pg", "ray")
SMOKE_PEERS = ("quix", "celery-redis", "celery-pg")


def run_peers(names: list[str], tasks: int, slots: list[int], args: argparse.Namespace,
              skipped: dict[str, str]) -> list[PeerResult]:
    """Each requested peer at each concurrency; a peer whose dependencies are missing lands in `skipped`."""
    missing: dict[str, Callable[[], str | None]] = {"quix": peers.quix_missing, "celery-redis": peers.celery_missing,
                                                    "celery-pg": peers.celery_missing, "ray": peers.ray_missing}
    results: list[PeerResult] = []
    for name in names:
        why = missing[name]()
        if why:
            skipped[name] = why
            say(f"\n  !!!!! SKIPPED peer {name}: {why} (run .ci/install-bench-deps.sh"
                f"{' --ray' if name == 'ray' else ''}) !!!!!")
            continue
        say(f"\n== peer {name}, concurrency {','.join(map(str, slots))}, {tasks} pipelines")
        if name == "quix":
            results += bench_quix.run(tasks, slots, args.kafka)
        elif name == "ray":
            results += bench_ray.run(tasks, slots)
        else:
            results += bench_celery.run(tasks, slots, args.pg, (name.removeprefix("celery-"),))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short version of each benchmark (CI)")
    parser.add_argument("--tasks", type=int, default=2000, help="pipelines for the engine and the peers")
    parser.add_argument("--slots", type=harness.parse_ints, default=[1, 2, 4], help="engine slot counts")
    parser.add_argument("--peer-slots", "--celery-slots", type=harness.parse_ints, default=None,
                        help="the peers' concurrencies (default: the engine's slot counts)")
    parser.add_argument("--peers", default=None,
                        help=f"peers to run, of {','.join(PEERS)} (default: all; --smoke: {','.join(SMOKE_PEERS)})")
    parser.add_argument("--runs", type=int, default=200, help="latency runs")
    parser.add_argument("--max-seconds", type=float, default=180.0,
                        help="cap per engine run; its rates are then over the tasks done (0: no cap)")
    parser.add_argument("--no-celery", action="store_true", help="leave the Celery peers out")
    parser.add_argument("--profile", action="store_true", help="py-spy an agent in an extra, unmeasured run")
    parser.add_argument("--warm-up", type=int, default=bench_engine.WARM_UP_PIPELINES,
                        help="pipelines of an unmeasured engine run that warms the broker first (0: none)")
    parser.add_argument("--json", action="store_true", help="print every result as one JSON line at the end")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    baseline_n = 2000
    if args.smoke:
        args.tasks, args.slots, args.runs, baseline_n, args.profile, args.max_seconds = 200, [2], 30, 300, False, 60.0
        args.peer_slots = [2]
    peer_slots = args.peer_slots or args.slots
    names = [n for n in (args.peers.split(",") if args.peers else SMOKE_PEERS if args.smoke else PEERS) if n]
    unknown = set(names) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}: choose from {','.join(PEERS)}")
    skipped: dict[str, str] = {}
    if args.no_celery:
        skipped.update({n: "--no-celery" for n in names if n.startswith("celery")})
    if args.smoke and not args.peers:
        skipped["ray"] = "left out of the smoke run (a large install and a slow start; the full run has it)"
    names = [n for n in names if n not in skipped]
    started = time.monotonic()
    with harness.sigterm_as_interrupt():
        harness.check_services(args.kafka, args.pg)
        say(f"machine: {os.cpu_count()} cpus, load average {harness.load_average()}; "
            f"kafka {args.kafka}; mode {'smoke' if args.smoke else 'full'}")

        say("\n########## 1. engine overhead (bench_engine)")
        base, engine = bench_engine.run(args.tasks, args.slots, baseline_n, args.kafka, args.pg, args.profile,
                                        args.max_seconds or None, 0 if args.smoke else args.warm_up,
                                        settle_s=0.0 if args.smoke else 30.0)

        say("\n########## 2. latency (bench_latency)")
        latency = bench_latency.run_latency(args.runs, args.kafka, args.pg, settle_s=0.0 if args.smoke else 60.0)
        bench_latency.report(latency)

        say("\n########## 3. the peers at their best (bench_quix, bench_celery, bench_ray)")
        engine_rates = {r.slots: r.rate for r in engine}
        for s in peer_slots:  # the engine numbers of slot counts not measured above
            if s not in engine_rates and names:
                extra = bench_engine.run_engine(s, args.tasks, args.kafka, args.pg,
                                                max_seconds=args.max_seconds or None)
                bench_engine.report_short(extra)
                engine_rates[s] = extra.rate
        peer_results = run_peers(names, args.tasks, peer_slots, args, skipped)

    rows: list[Row] = [*bench_engine.rows(engine, base), bench_engine.cpu_row(engine), *bench_latency.rows(latency),
                       *peers.rows(peer_results, engine_rates)]
    for name, why in skipped.items():
        rows.append(Row(f"peer {name} SKIPPED: {why}", float("nan"), "", None, "", None, "-", None))
    if not peer_results:
        rows.append(Row("engine vs best peer (n/a: no peer ran)", float("nan"), "", None, "", None,
                        f">= {peers.GOAL_RATIO:g}x", None))
    harness.print_table(rows, f"summary ({'smoke' if args.smoke else 'full'}, {os.cpu_count()} cpus, "
                              f"{time.monotonic() - started:.0f}s, load average now {harness.load_average()})")
    if peer_results:
        say("\nthe peers' configurations (concurrency c = c executions of each stage at once, as the engine's slots):")
        for r in peer_results:
            say(f"  {r.peer} c={r.slots}: {r.rate:.1f} tasks/s -- {r.config}")
    say("goals are reported, not asserted; exit code 0 = every benchmark ran")
    if args.json:
        print(json.dumps({"baseline": asdict(base), "engine": [asdict(r) for r in engine],
                          "latency": asdict(latency), "peers": [asdict(p) for p in peer_results],
                          "skipped": skipped, "engine_rates": engine_rates}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
