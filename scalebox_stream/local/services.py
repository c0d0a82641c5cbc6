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

    Secure unless `secure` is False (`--insecure`, remembered for the next `up` of this home): SCRAM for Kafka
    on loopback, scram-sha-256 passwords for PostgreSQL, credentials under the home (`local.secure`) that
    clients of this home pick up by themselves. A home made before that default is upgraded on its next start
    (`upgrade_notice` says so while its services still run without authentication)."""
    with home.home_lock():
        kafka.check_prerequisites(need_mvn=not kafka.jars_complete() and kafka.running() is None)
        state = home.load_state()
        insecure_running, asked = _running_insecure(), secure
        secure = secure_choice(asked, bool(state.get("insecure")), insecure_running)
        ports = {
            "kafka.port": _port("kafka", "port", kafka_port, kafka.DEFAULT_PORT),
            "kafka.controller_port": _port("kafka", "controller_port", controller_port, kafka.DEFAULT_CONTROLLER_PORT),
            "postgres.port": _port("postgres", "port", pg_port, postgres.DEFAULT_PORT),
            "kafka.internal_port": _port("kafka", "internal_port", internal_port, kafka.DEFAULT_INTERNAL_PORT),
        }
        pg = postgres.start(ports["postgres.port"], timeout=timeout, secure=secure)
        broker = kafka.start(ports["kafka.port"], ports["kafka.controller_port"], stall_s=timeout,
                             internal_port=ports["kafka.internal_port"] if secure else None)
        kafka.ensure_tools()
        home.update_state("secure", broker.internal_port is not None)
        home.update_state("insecure", state.get("insecure") if asked is None else (True if not asked else None))
        home.update_state("ports", ports)
        return Endpoints(kafka_bootstrap=broker.bootstrap, pg_dsn=pg.dsn)


def secure_choice(asked: bool | None, said_insecure: bool, running_insecure: list[str]) -> bool:
    """Whether an `up` secures the pair: as `asked`; by default secure unless the home said `--insecure` or
    some of its services run without authentication now (`running_insecure`: a running service is never
    restarted behind the user's back, and the pair stays of one kind). Asked to secure services that run
    without authentication, it refuses with what to do."""
    if asked is None:
        return not said_insecure and not running_insecure
    if asked and running_insecure:
        raise LocalServiceError(f"the local {' and '.join(running_insecure)} run(s) without authentication: "
                                "`scalebox local down` first, then `scalebox local up` starts them secured")
    return asked


def _running_insecure() -> list[str]:
    """The local services that run without authentication now (Kafka without SCRAM, PostgreSQL with trust)."""
    broker = kafka.running()
    found = ["Kafka"] if broker is not None and broker.internal_port is None else []
    if postgres.running() is not None and not postgres.secured():
        found.append("PostgreSQL")
    return found


def upgrade_notice() -> str | None:
    """What to do when the local services run without authentication though this home never asked for that
    (started before the secure default); None otherwise."""
    if home.load_state().get("insecure"):
        return None
    found = _running_insecure()
    if not found:
        return None
    return (f"note: the local {' and '.join(found)} run(s) without authentication (started before the secure "
            "default); `scalebox local down && scalebox local up` restarts them secured (data kept), "
            "`scalebox local up --insecure` keeps them so and silences this note (docs/security.md)")


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
