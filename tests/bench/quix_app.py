"""One Quix Streams application process of bench_quix.py: stage a or stage b of the two-stage pipeline.

    .venv-peers/bin/python tests/bench/quix_app.py --broker HOST:PORT --prefix sbx.bench.quix.TAG --stage a

Stage a consumes `<prefix>.a`, runs /bin/true in a subprocess and produces the record to `<prefix>.b`; stage b
consumes `<prefix>.b`, runs /bin/true and produces it to `<prefix>.done` (where the driver counts finished
pipelines). Exactly-once processing: each checkpoint's output and consumer offsets commit in one Kafka
transaction, and the consumers read committed records only. Runs in the peers' virtualenv (.venv-peers), since
quixstreams pins a confluent-kafka older than the engine's; it imports nothing of the engine. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models import TopicConfig


def spawn(value: dict) -> dict:
    """The task: /bin/true with the body and headers as arguments, like the engine's and Celery's stages."""
    subprocess.run(["/bin/true", str(value["i"]), "{}"], check=True)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--prefix", required=True, help="topic and group prefix, e.g. sbx.bench.quix.<tag>")
    parser.add_argument("--stage", choices=("a", "b"), required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--fetch-wait-ms", type=int, default=50)
    parser.add_argument("--linger-ms", type=float, default=0.0)
    parser.add_argument("--poll-timeout", type=float, default=0.05,
                        help="consumer_poll_timeout (Quix's default 1 s): a checkpoint is due-checked only between "
                             "polls, so an idle poll of 1 s holds a stage's last records back up to 1 s")
    args = parser.parse_args(argv)
    # The driver sends the engine's client security on stdin (never on the command line): a JSON object of
    # librdkafka settings, empty for a PLAINTEXT broker.
    login = json.loads(sys.stdin.read() or "{}")
    broker = (ConnectionConfig.from_librdkafka_dict({"bootstrap.servers": args.broker, **login}) if login
              else args.broker)
    app = Application(broker_address=broker, consumer_group=f"{args.prefix}.{args.stage}",
                      processing_guarantee="exactly-once", auto_offset_reset="earliest",
                      commit_interval=args.commit_interval, state_dir=args.state_dir, loglevel="WARNING",
                      use_changelog_topics=False, consumer_poll_timeout=args.poll_timeout,
                      # The engine's own client settings (scalebox_stream/kafka/config.py, transactions.py): short
                      # fetch waits, and back-to-back transactions that do not sit out librdkafka's 100 ms backoff.
                      consumer_extra_config={"fetch.wait.max.ms": args.fetch_wait_ms},
                      producer_extra_config={"retry.backoff.ms": 1, "retry.backoff.max.ms": 100,
                                             "linger.ms": args.linger_ms})
    config = TopicConfig(num_partitions=args.partitions, replication_factor=1)
    source = app.topic(f"{args.prefix}.{args.stage}", value_deserializer="json", config=config)
    sink = app.topic(f"{args.prefix}.{'b' if args.stage == 'a' else 'done'}", value_serializer="json", config=config)
    sdf = app.dataframe(source).apply(spawn)
    sdf.to_topic(sink)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
