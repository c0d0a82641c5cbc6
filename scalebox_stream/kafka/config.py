"""Client configurations: one place that says how agents, the projector, state owners and the CLI talk to
Kafka. Each adds the process's client security (`kafka.security`: SASL/SCRAM, TLS) and an error callback
that ends a refused login with a plain error instead of endless retries."""

from __future__ import annotations

import os
import uuid
from typing import Any

from scalebox_stream.kafka.client_log import GATE, LibrdkafkaLogger
from scalebox_stream.kafka.errors import raise_on_refusal
from scalebox_stream.kafka.security import client_security, username

LIBRDKAFKA_LOG = LibrdkafkaLogger(GATE)
"""Every client's `logger`: its lines go to the `librdkafka` logger through the process's gate (`client_log`)."""
TRANSACTION_TIMEOUT_ENV = "SCALEBOX_TRANSACTION_TIMEOUT_MS"
"""Overrides the transactional producers' `transaction.timeout.ms` (default 60 s): how long the broker keeps a
transaction of a process killed inside it open, holding read-committed readers of its partitions back. Tests that
kill agents shorten it; the default suits production."""
DEFAULT_TRANSACTION_TIMEOUT_MS = 60000


def _logged(config: dict[str, Any]) -> dict[str, Any]:
    """The config with librdkafka's log lines sent to Python logging (`LIBRDKAFKA_LOG`, which says an outage once,
    not at every retry), where the process's handlers decide: a worker's log file, the CLI's log file, the
    terminal only with --verbose. Never straight to stderr. A client silenced with `log_level: 0` needs no logger."""
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
        config["transaction.timeout.ms"] = int(os.environ.get(TRANSACTION_TIMEOUT_ENV)
                                               or DEFAULT_TRANSACTION_TIMEOUT_MS)
    config.update(extra)
    return secured(_logged(config))


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
    return secured(_logged(config))


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
    return secured(_logged(config))


def admin_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Admin client configuration."""
    return secured(_logged({"bootstrap.servers": bootstrap, **extra}), refusals_raise=False)


def secured(config: dict[str, Any], refusals_raise: bool = True) -> dict[str, Any]:
    """`config` with the client security for its bootstrap servers under it (what `config` sets wins) and,
    if `refusals_raise`, the error callback that raises on a refused login unless it brings its own (admin
    clients answer through futures and timeouts; commands probe the cluster first, `launch.services`)."""
    merged: dict[str, Any] = {**client_security(str(config.get("bootstrap.servers") or "")), **config}
    if refusals_raise:
        merged.setdefault("error_cb", raise_on_refusal(username(merged)))
    return merged
