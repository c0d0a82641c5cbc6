"""Projector throughput: replay a synthetic log into fresh databases at batch sizes 1, 100 and 1000, then at
batch size 1000 with `--processes` (default 2: one per core) projector processes in one group.

    python tests/bench/bench_projector.py [--events N] [--prefix N] [--processes N] [--repeat N] [--smoke] ...

Writes about N realistic events (task lifecycles with children, retries and ~200-byte stdout) to a fresh
topic, then projects them into a fresh database per batch size and prints events/s and the ratio to batch
size 1 (the in-run baseline). Batch size 1 runs over the first `--prefix` events only (it is slow); the
output says so. Each configuration runs `--repeat` times (default 3, in rounds: every configuration once per
round, so a slow spell of the VM does not land on one configuration only); the table shows the median and
the range. Every run's tables are digested: the projection must not depend on the batch size.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass

import harness
import psycopg
import testpath  # noqa: F401  (tests/ on sys.path: `support`)
from support import verify, workload

from scalebox_stream.projector.group import ProjectorConfig, run_projectors
from scalebox_stream.projector.service import Projector, ProjectorSettings

SIZES = (1, 100, 1000)
PROCESSES = 2
"""The last run: batch size 1000 with this many projector processes (one per core of the 2-core VM)."""
REPEAT = 3
"""Runs of each configuration (the table shows the median and the range): single runs on a small VM are noisy."""


@dataclass
class Result:
    """One replay."""

    batch_size: int
    events: int
    seconds: float
    rate: float
    digests: dict[str, tuple[int, str]]
    processes: int = 1


def replay(bootstrap: str, pg: str, topic: str, batch_size: int, tag: str, processes: int = 1) -> Result:
    """Project `topic` into a fresh database with `batch_size` and `processes` projectors; drop the database
    and delete the consumer group afterwards."""
    name = f"bench_{tag}_{batch_size}_{processes}"
    dsn = verify.create_database(pg, name)
    group = f"sbx.bench.{tag}.{batch_size}.{processes}"
    try:
        if processes == 1:  # in this process, as before (no signal handlers: the benchmark is the main program)
            stats = Projector(bootstrap, dsn, ProjectorSettings(batch_size=batch_size), group=group, topic=topic).run(
                until_caught_up=True, install_signals=False)
        else:
            config = ProjectorConfig(bootstrap, dsn, ProjectorSettings(batch_size=batch_size), group, topic)
            stats = run_projectors(config, processes, until_caught_up=True)
        with psycopg.connect(dsn) as conn:
            digests = verify.table_digests(conn)
    finally:
        verify.drop_database(pg, name)
        harness.forget(bootstrap, groups=[group])
    seconds = (stats.last_batch_at or 0) - (stats.first_batch_at or 0)
    return Result(batch_size, stats.events, seconds, stats.rate(), digests, processes)


def compare(results: list[Result]) -> list[str]:
    """Tables whose digests differ between runs over the same events (without the offsets table)."""
    by_events: dict[int, list[Result]] = {}
    for r in results:
        by_events.setdefault(r.events, []).append(r)
    bad = []
    for group in by_events.values():
        for r in group[1:]:
            for table, digest in r.digests.items():
                if table != "projector_offsets" and digest != group[0].digests[table]:
                    bad.append(f"{table} (batch {r.batch_size} vs {group[0].batch_size})")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--prefix", type=int, default=5_000, help="events replayed at batch size 1")
    parser.add_argument("--smoke", action="store_true", help="~5k events, every batch size on all of them")
    parser.add_argument("--kafka", default=os.environ.get("SCALEBOX_KAFKA", "127.0.0.1:19092"))
    parser.add_argument("--pg", default=os.environ.get("SCALEBOX_PG", "postgresql://postgres@127.0.0.1:15432/scalebox"))
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    parser.add_argument("--processes", type=int, default=PROCESSES, help="projector processes in the last run")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="runs of each configuration (smoke: 1)")
    args = parser.parse_args(argv)
    n_events, prefix = (5_000, 5_000) if args.smoke else (args.events, min(args.prefix, args.events))
    repeat = 1 if args.smoke else max(1, args.repeat)
    tag = uuid.uuid4().hex[:8]
    events = list(workload.generate(n_events, app=f"bench-{tag}"))
    if args.smoke:
        prefix = len(events)
    full, head = f"sbx.bench.{tag}.full", f"sbx.bench.{tag}.prefix"
    started = time.monotonic()
    workload.produce(args.kafka, full, events)
    if prefix < len(events):
        workload.produce(args.kafka, head, events[:prefix])
    n_written = len(events)
    del events  # the projector runs in this process: measure it without the workload in its heap
    print(f"wrote {n_written} events to {full} in {time.monotonic() - started:.1f}s"
          + (f" (and the first {prefix} to {head})" if prefix < n_written else ""), flush=True)
    configs = [*((s, 1) for s in SIZES), (SIZES[-1], args.processes)]
    runs: dict[tuple[int, int], list[Result]] = {c: [] for c in configs}
    try:
        for round_no in range(repeat):
            for size, processes in configs:
                topic = head if size == 1 and prefix < n_written else full
                r = replay(args.kafka, args.pg, topic, size, f"{tag}r{round_no}", processes)
                runs[(size, processes)].append(r)
                print(f"batch {size:>5}, {processes} process(es): {r.events:>7} events in {r.seconds:7.2f}s = "
                      f"{r.rate:9.0f} events/s" + (f"  (round {round_no + 1}/{repeat})" if repeat > 1 else ""),
                      flush=True)
    finally:
        harness.forget(args.kafka, topics=[full, head] if prefix < n_written else [full])
    medians = {c: statistics.median(r.rate for r in rs) for c, rs in runs.items()}
    base = medians[configs[0]] or 1.0
    print(f"\nbatch size | processes | events | events/s (median of {repeat}) | range | ratio to batch 1")
    for (size, processes), rs in runs.items():
        note = " (prefix)" if size == 1 and rs[0].events < n_written else ""
        rates = [r.rate for r in rs]
        print(f"{size:>10} | {processes:>9} | {rs[0].events:>6}{note} | {medians[(size, processes)]:>8.0f} | "
              f"{min(rates):.0f}-{max(rates):.0f} | {medians[(size, processes)] / base:6.1f}x")
    results = [r for rs in runs.values() for r in rs]
    counts = {f"{s}x{p}": {t: d[0] for t, d in rs[0].digests.items()} for (s, p), rs in runs.items()}
    differing = compare(results)
    if args.json:
        print(json.dumps({"rates": {f"{s}x{p}": m for (s, p), m in medians.items()}, "counts": counts,
                          "runs": {f"{s}x{p}": [r.rate for r in rs] for (s, p), rs in runs.items()}}))
    if differing:
        print("PROJECTIONS DIFFER: " + ", ".join(differing), file=sys.stderr)
        return 1
    print("projections identical across batch sizes (same events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
