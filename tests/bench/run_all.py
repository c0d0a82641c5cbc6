"""Every benchmark of the "slots fast enough to beat the peers" issue, one command, one summary table.

    .venv/bin/python tests/bench/run_all.py [--smoke] [--no-celery] [--profile] [--json]

1. bench_engine: two-stage no-op pipeline, tasks/s at slots 1, 2, 4 vs raw /bin/true spawns/s (goal >= 0.4)
2. bench_latency: one task through three modules, p50/p99 (goal p50 <= 30 ms) vs three raw spawns
3. bench_celery: the same pipeline on Celery + Redis + PostgreSQL results (goal engine >= 1.5x Celery)

Goals are reported, never asserted: the exit code is 0 when every benchmark ran to completion and non-zero
on errors (a service down, a child that died, a timeout). `--smoke` is a short version of each (~2 minutes
on the 2-core development VM), meant for CI. Celery is skipped, loudly, when redis-server or celery is not
installed (.ci/install-bench-deps.sh installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict

import bench_celery
import bench_engine
import bench_latency
import harness
from harness import Row, say


def celery_available() -> str | None:
    """None if the Celery benchmark can run, else why not."""
    if shutil.which("redis-server") is None:
        return "redis-server not installed"
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} not installed in the venv"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a short version of each benchmark (CI)")
    parser.add_argument("--tasks", type=int, default=2000, help="pipelines for the engine and Celery")
    parser.add_argument("--slots", type=harness.parse_ints, default=[1, 2, 4], help="engine slot counts")
    parser.add_argument("--celery-slots", type=harness.parse_ints, default=None,
                        help="Celery concurrencies (default: the engine's slot counts)")
    parser.add_argument("--runs", type=int, default=200, help="latency runs")
    parser.add_argument("--max-seconds", type=float, default=180.0,
                        help="cap per engine run; its rates are then over the tasks done (0: no cap)")
    parser.add_argument("--no-celery", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy an agent in an extra, unmeasured run")
    parser.add_argument("--warm-up", type=int, default=bench_engine.WARM_UP_PIPELINES,
                        help="pipelines of an unmeasured engine run that warms the broker first (0: none)")
    parser.add_argument("--json", action="store_true", help="print every result as one JSON line at the end")
    harness.add_service_args(parser)
    args = parser.parse_args(argv)
    baseline_n = 2000
    if args.smoke:
        args.tasks, args.slots, args.runs, baseline_n, args.profile, args.max_seconds = 200, [2], 30, 300, False, 60.0
        args.celery_slots = [2]
    celery_slots = args.celery_slots or args.slots
    started = time.monotonic()
    with harness.sigterm_as_interrupt():
        harness.check_services(args.kafka, args.pg)
        say(f"machine: {os.cpu_count()} cpus, load average {harness.load_average()}; "
            f"kafka {args.kafka}; mode {'smoke' if args.smoke else 'full'}")

        say("\n########## 1. engine overhead (bench_engine)")
        base, engine = bench_engine.run(args.tasks, args.slots, baseline_n, args.kafka, args.pg, args.profile,
                                        args.max_seconds or None, 0 if args.smoke else args.warm_up,
                                        settle_s=5.0 if args.smoke else 30.0)

        say("\n########## 2. latency (bench_latency)")
        latency = bench_latency.run_latency(args.runs, args.kafka, args.pg, settle_s=5.0 if args.smoke else 60.0)
        bench_latency.report(latency)

        say("\n########## 3. peer comparison (bench_celery)")
        skipped = "--no-celery" if args.no_celery else celery_available()
        celery: list[bench_celery.CeleryResult] = []
        engine_rates = {r.slots: r.rate for r in engine}
        if skipped:
            say(f"  SKIPPED: {skipped} (run .ci/install-bench-deps.sh)")
        else:
            for s in celery_slots:  # the engine numbers of slot counts not measured above
                if s not in engine_rates:
                    extra = bench_engine.run_engine(s, args.tasks, args.kafka, args.pg,
                                                    max_seconds=args.max_seconds or None)
                    bench_engine.report_short(extra)
                    engine_rates[s] = extra.rate
            celery = bench_celery.run(args.tasks, celery_slots, args.pg)

    rows: list[Row] = [*bench_engine.rows(engine, base), *bench_latency.rows(latency),
                       *bench_celery.rows(celery, engine_rates)]
    if skipped:
        rows.append(Row(f"engine vs celery (SKIPPED: {skipped})", float("nan"), "", None, "", None,
                        f">= {bench_celery.GOAL_RATIO}x", None))
    harness.print_table(rows, f"summary ({'smoke' if args.smoke else 'full'}, {os.cpu_count()} cpus, "
                              f"{time.monotonic() - started:.0f}s, load average now {harness.load_average()})")
    say("goals are reported, not asserted; exit code 0 = every benchmark ran")
    if args.json:
        print(json.dumps({"baseline": asdict(base), "engine": [asdict(r) for r in engine],
                          "latency": asdict(latency), "celery": [asdict(c) for c in celery],
                          "engine_rates": engine_rates}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
