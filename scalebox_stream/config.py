"""Where Kafka and PostgreSQL are: flags, then environment, then the local services."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Connections:
    """The Kafka bootstrap servers and the PostgreSQL DSN a command uses."""

    kafka: str
    pg: str


def resolve(kafka: str | None = None, pg: str | None = None, start_local: bool = True) -> Connections:
    """`--kafka`/`--pg`, else `SCALEBOX_KAFKA`/`SCALEBOX_PG`, else the local services (started if needed)."""
    kafka = kafka or os.environ.get("SCALEBOX_KAFKA")
    pg = pg or os.environ.get("SCALEBOX_PG")
    if kafka and pg:
        return Connections(kafka, pg)
    if not start_local:
        raise RuntimeError("no Kafka/PostgreSQL given (--kafka/--pg or SCALEBOX_KAFKA/SCALEBOX_PG); "
                           "start local ones with `scalebox local up`")
    from scalebox_stream.local.services import ensure_running

    local = ensure_running()
    return Connections(kafka or local.kafka_bootstrap, pg or local.pg_dsn)
