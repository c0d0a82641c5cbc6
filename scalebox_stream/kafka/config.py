"""Client configurations: one place that says how agents, the projector and the CLI talk to Kafka."""

from __future__ import annotations

import logging
import uuid
from typing import Any

LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


def _logged(config: dict[str, Any]) -> dict[str, Any]:
    """The config with librdkafka's log lines sent to Python logging (`LIBRDKAFKA_LOG`), where the process's
    handlers decide: a worker's log file, the CLI's log file, the terminal only with --verbose. Never straight
    to stderr. A client silenced with `log_level: 0` needs no logger."""
    if config.get("log_level") != 0:
        config.setdefault("logger", LIBRDKAFKA_LOG)
    return config


def producer_config(bootstrap: str, transactional_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """An idempotent producer; transactional when `transactional_id` is given."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
    }
    if transactional_id:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = 60000
    config.update(extra)
    return _logged(config)


def consumer_config(bootstrap: str, group_id: str, **extra: Any) -> dict[str, Any]:
    """A read-committed consumer that never commits on its own."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": 300000,
        "session.timeout.ms": 45000,
        "fetch.wait.max.ms": 50,
    }
    config.update(extra)
    return _logged(config)


def reader_config(bootstrap: str, purpose: str, group_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A side consumer that reads (assigned partitions, metadata, offsets) and never commits.

    Its group is a fresh `sbx.<purpose>.<random>` so it never joins a real group, unless `group_id` names
    the group whose committed offsets it is there to read.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id or f"sbx.{purpose}.{uuid.uuid4().hex}",
        "enable.auto.commit": False,
    }
    config.update(extra)
    return _logged(config)


def admin_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Admin client configuration."""
    return _logged({"bootstrap.servers": bootstrap, **extra})
