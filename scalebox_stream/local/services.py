"""``scalebox local up|down|status``: the local Kafka + PostgreSQL pair as one unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scalebox_stream.config import CliSettings, Connections
from scalebox_stream.local import home, kafka, postgres
from scalebox_stream.local.home import LocalServiceError, MissingPrerequisite

__all__ = ["Endpoints", "LocalServiceError", "MissingPrerequisite", "connections", "down", "ensure_running", "reset",
           "status", "up"]


@dataclass(frozen=True)
class Endpoints:
    """How clients reach the local services."""

    kafka_bootstrap: str
    pg_dsn: str


def _port(section: str, key: str, given: int | None, default: int) -> int:
    """An explicit port, else the one used last time (kept in the state file), else the default."""
    if given is not None:
        return given
    return int(home.load_state().get("ports", {}).get(f"{section}.{key}", default))


def up(
    kafka_port: int | None = None,
    controller_port: int | None = None,
    pg_port: int | None = None,
    timeout: float = 90.0,
    secure: bool | None = None,
    internal_port: int | None = None,
) -> Endpoints:
    """Start both services unless running (idempotent) and return their endpoints. PostgreSQL gets `timeout`
    seconds; Kafka as long as its log keeps advancing, until it is silent for `timeout` seconds.

    `secure` (None: as the last `up` of this home): SCRAM for Kafka on loopback, passwords and TLS for
    PostgreSQL, credentials under the home (`local.secure`); clients of this home pick them up by themselves."""
    with home.home_lock():
        kafka.check_prerequisites(need_mvn=not kafka.jars_complete() and kafka.running() is None)
        if secure is None:
            secure = bool(home.load_state().get("secure", False))
        ports = {
            "kafka.port": _port("kafka", "port", kafka_port, kafka.DEFAULT_PORT),
            "kafka.controller_port": _port("kafka", "controller_port", controller_port, kafka.DEFAULT_CONTROLLER_PORT),
            "postgres.port": _port("postgres", "port", pg_port, postgres.DEFAULT_PORT),
        }
        if secure:
            ports["kafka.internal_port"] = _port("kafka", "internal_port", internal_port, kafka.DEFAULT_INTERNAL_PORT)
        pg = postgres.start(ports["postgres.port"], timeout=timeout, secure=secure)
        broker = kafka.start(ports["kafka.port"], ports["kafka.controller_port"], stall_s=timeout,
                             internal_port=ports.get("kafka.internal_port"))
        kafka.ensure_tools()
        home.update_state("secure", secure)
        home.update_state("ports", ports)
        return Endpoints(kafka_bootstrap=broker.bootstrap, pg_dsn=pg.dsn)


def down() -> dict[str, bool]:
    """Stop both services; returns which ones were running."""
    with home.home_lock():
        return {"kafka": kafka.stop(), "postgres": postgres.stop()}


def reset() -> dict[str, bool]:
    """Stop both services and delete their data (topics, offsets, the projection); the next `up` starts them
    empty. Kafka's jars stay. Returns which ones were running."""
    with home.home_lock():
        stopped = {"kafka": kafka.stop(), "postgres": postgres.stop()}
        kafka.delete_data()
        postgres.delete_data()
        return stopped


def status() -> dict[str, Any]:
    """What runs where, as a JSON-able dict: ``{"home", "kafka": {...}, "postgres": {...}}``."""
    return {"home": str(home.scalebox_home()), "kafka": kafka.status(), "postgres": postgres.status()}


def ensure_running() -> Endpoints:
    """Endpoints of the running services, starting them first if needed (for other commands and tests)."""
    broker, pg = kafka.running(), postgres.running()
    if broker is not None and pg is not None:
        return Endpoints(kafka_bootstrap=broker.bootstrap, pg_dsn=pg.dsn)
    return up()


def connections(settings: CliSettings, start_local: bool = True) -> Connections:
    """Kafka and PostgreSQL as the settings give them, else the local services (started if needed)."""
    if settings.kafka and settings.pg:
        return Connections(settings.kafka, settings.pg)
    if not start_local:
        raise RuntimeError("no Kafka/PostgreSQL given (--kafka/--pg or SCALEBOX_KAFKA/SCALEBOX_PG); "
                           "start local ones with `scalebox local up`")
    local = ensure_running()
    return Connections(settings.kafka or local.kafka_bootstrap, settings.pg or local.pg_dsn)
