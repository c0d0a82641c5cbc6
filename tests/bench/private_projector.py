"""A projector with its own consumer group, for a benchmark's private database.

    python tests/bench/private_projector.py --kafka HOST:PORT --pg DSN --group GROUP

The code path is production's (`scalebox_stream.projector.service.Projector`, as `scalebox projector` runs
it); only the consumer group differs, so a benchmark's projector never joins (and waits on rebalances of)
the shared `sbx.projector` group that other runs on the same services use. The database must already hold
the positions to start from (see `harness.private_database`).
"""

from __future__ import annotations

import argparse
import sys

from scalebox_stream.cli.common import setup_logging
from scalebox_stream.projector.service import Projector, ProjectorSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kafka", required=True)
    parser.add_argument("--pg", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args(argv)
    setup_logging(False)
    stats = Projector(args.kafka, args.pg, ProjectorSettings(batch_size=args.batch_size), group=args.group).run()
    print(f"projected {stats.events} event(s) in {stats.batches} batch(es); {stats.dead_letters} dead-lettered",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
