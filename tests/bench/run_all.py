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


def available(names: list[str], skipped: dict[str, str]) -> list[str]:
    """The peers whose dependencies are installed; the others land in `skipped`, loudly."""
    missing: dict[str, Callable[[], str | None]] = {"quix": peers.quix_missing, "celery-redis": peers.celery_missing,
                                                    "celery-pg": peers.celery_missing, "ray": peers.ray_missing}
    out = []
    for name in names:
        why = missing[name]()
        if why:
            skipped[name] = why
            say(f"\n  !!!!! SKIPPED peer {name}: {why} (run .ci/install-bench-deps.sh"
                f"{' --ray' if name == 'ray' else ''}) !!!!!")
        else:
            out.append(name)
    return out


def run_peer(name: str, tasks: int, slots: int, args: argparse.Namespace) -> list[PeerResult]:
    """One peer at one concurrency."""
    say(f"\n== peer {name}, concurrency {slots}, {tasks} pipelines")
    if name == "quix":
        return bench_quix.run(tasks, [slots], args.kafka)
    if name == "ray":
        return bench_ray.run(tasks, [slots])
    return bench_celery.run(tasks, [slots], args.pg, (name.removeprefix("celery-"),))


def run_peers(names: list[str], tasks: int, slots: list[int], args: argparse.Namespace,
              rounds: int) -> tuple[list[PeerResult], dict[int, bench_engine.EngineResult]]:
    """Per concurrency, the engine and then each peer, back to back, so that a shared machine's changing load
    weighs on both alike; `rounds` times over. Returns every peer result and the engine's best run per
    concurrency among these."""
    results: list[PeerResult] = []
    engine: dict[int, bench_engine.EngineResult] = {}
    for k in range(rounds):
        for s in slots:
            say(f"\n== round {k + 1}/{rounds}, concurrency {s}: the engine next to the peers; machine "
                f"{harness.wait_until_idle(timeout_s=10)}")
            e = bench_engine.run_engine(s, tasks, args.kafka, args.pg, max_seconds=args.max_seconds or None)
            bench_engine.report_short(e)
            if e.cpu is not None:
                say(f"  CPU: {e.cpu.line()}")
            if s not in engine or e.rate > engine[s].rate:
                engine[s] = e
            for name in names:
                results += run_peer(name, tasks, s, args)
    return results, engine


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
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of the peer comparison (each: the engine and every peer at each concurrency)")
    parser.add_argument("--max-seconds", type=float, default=180.0,
                        help="cap per engine run; its rates are then over the tasks done (0: no cap)")
    parser.add_argument("--no-celery", action="store_true", help="leave the Celery peers out")
    parser.add_argument("--profile", action="store_true", help="py-spy an agent in an extra, unmeasured run")
    parser.add_argument("--warm-up", type=int, default=bench_engine.WARM_UP_PIPELINES,
                        help="pipelines of each unmeasured engine run that warms the broker first, repeated until its "
                             "CPU per task settles (0: none)")
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
        names = available(names, skipped)
        peer_results, engine_next = (run_peers(names, args.tasks, peer_slots, args, args.rounds) if names
                                     else ([], {}))
        engine_rates = {s: r.rate for s, r in engine_next.items()}

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
        say("\nthe engine next to the peers (its best of the rounds; section 1's run in brackets) and each peer with "
            "its configuration\n(concurrency c = c executions of each stage at once, as the engine's slots):")
        first = {r.slots: r.rate for r in engine}
        for s, e in sorted(engine_next.items()):
            also = f" ({first[s]:.1f})" if s in first else ""
            cpu = f"; {e.cpu.line()}" if e.cpu is not None else ""
            say(f"  engine c={s}: {e.rate:.1f} tasks/s{also}{cpu}")
        for r in peer_results:
            say(f"  {r.peer} c={r.slots}: {r.rate:.1f} tasks/s -- {r.config}")
            if r.cpu_by_kind:
                say("      CPU ms/task: " + ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_by_kind.items())
                    + f" (machine {r.cpu_ms:.2f})")
    say("goals are reported, not asserted; exit code 0 = every benchmark ran")
    if args.json:
        print(json.dumps({"baseline": asdict(base), "engine": [asdict(r) for r in engine],
                          "latency": asdict(latency), "peers": [asdict(p) for p in peer_results],
                          "skipped": skipped, "engine_rates": engine_rates,
                          "engine_next_to_peers": [asdict(r) for r in engine_next.values()]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
