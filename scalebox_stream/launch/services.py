"""Kafka or PostgreSQL out of reach, said in one line: which service, where, why, and what to try.

`describe_outage` is the pure mapping from an exception (psycopg's, confluent_kafka's, or one raised from
them) to that line; `probe_kafka` and `probe_pg` ask each service once, with a short timeout, so a command
fails at its start instead of retrying for minutes (Kafka clients reconnect forever by themselves).
Passwords in a DSN never reach a message: every DSN is shown masked, as `host:port/dbname`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from scalebox_stream.config import Connections
from scalebox_stream.launch.errors import OperationError

EXIT_UNREACHABLE = 1
"""The exit code of a command whose Kafka or PostgreSQL is out of reach."""
KAFKA_HINT = "is it running? try: scalebox local up, or check --kafka / SCALEBOX_KAFKA"
PG_HINT = "try: scalebox local up, or check --pg / SCALEBOX_PG"
PG_SETTINGS_HINT = "check --pg / SCALEBOX_PG"
MASK = "***"
SECURITY_HINT = ("configure the client with SCALEBOX_KAFKA_CONFIG or SCALEBOX_KAFKA_SECURITY_PROTOCOL "
                 "(docs/security.md)")

_KAFKA_UNREACHABLE = frozenset({"_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_RESOLVE", "_MSG_TIMED_OUT",
                                "_BAD_MSG", "_TIMED_OUT_QUEUE", "NETWORK_EXCEPTION", "REQUEST_TIMED_OUT",
                                "BROKER_NOT_AVAILABLE"})
"""librdkafka error names that mean the cluster is out of reach (others are refusals with their own message)."""

_URI_PASSWORD = re.compile(r"(?P<head>^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:)(?P<secret>[^@/]*)(?=@)")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


class ServiceDown(OperationError):
    """Kafka or PostgreSQL cannot be reached; the message names it, where, and what to try."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=EXIT_UNREACHABLE)


def mask_dsn(dsn: str) -> str:
    """`dsn` with its password (URI `user:PASSWORD@` or `password=...`, also as a URI parameter) replaced."""
    masked = _URI_PASSWORD.sub(lambda m: m["head"] + MASK, dsn)
    return _KV_PASSWORD.sub(lambda m: m["head"] + MASK, masked)


def _password(dsn: str) -> str | None:
    """The DSN's password, if it has one (to scrub it from any text shown)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn).get("password") or None
    except Exception:  # not parseable: fall back to the patterns
        found = _URI_PASSWORD.search(dsn) or _KV_PASSWORD.search(dsn)
        return found["secret"].strip("'") if found and found["secret"] else None


def scrub(text: str, dsn: str) -> str:
    """`text` with the DSN's password (if any) masked wherever it occurs."""
    secret = _password(dsn)
    text = text.replace(dsn, mask_dsn(dsn))
    return text.replace(secret, MASK) if secret else text


def pg_address(dsn: str) -> str:
    """Where a DSN points, without credentials: `host:port/dbname` (libpq's defaults where it names none)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return mask_dsn(dsn)
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or 'postgres'}"


def pg_reason(text: str) -> tuple[str, bool]:
    """A short reason from a libpq error text, and whether the server answered (and refused us)."""
    first = " ".join(text.strip().split("\n")[0].split())
    lowered = text.lower()
    if fatal := re.search(r"FATAL:\s+(.*)", text):
        return " ".join(fatal[1].strip().split("\n")[0].split()), True
    if "certificate verify failed" in lowered or "does not match host name" in lowered:
        return "server certificate not trusted (check sslrootcert and the host name)", True
    if "connection refused" in lowered:
        return "connection refused", False
    if "resolve host" in lowered or "translate host name" in lowered or "name or service not known" in lowered:
        return "unknown host", False
    if "timeout expired" in lowered or "timed out" in lowered:
        return "timed out", False
    if "no such file or directory" in lowered:
        return "no server on that socket", False
    if "server closed the connection" in lowered or "consuming input failed" in lowered:
        return "the connection was lost", False
    return re.sub(r"^connection failed:\s*", "", first)[:200] or "unknown error", False


def pg_down(dsn: str, text: str) -> str:
    """The one line for a PostgreSQL that cannot be reached (or refuses us), given libpq's error text."""
    reason, answered = pg_reason(scrub(text, dsn))
    where = pg_address(dsn)
    if answered:
        return f"PostgreSQL at {where} refused the connection: {reason} ({PG_SETTINGS_HINT})"
    return f"cannot reach PostgreSQL at {where}: {reason} ({PG_HINT})"


def kafka_reason(texts: list[str]) -> str:
    """A short reason from librdkafka's error strings (the most telling first)."""
    joined = " ".join(texts).lower()
    if "connection refused" in joined:
        return "connection refused"
    if "resolve" in joined:
        return "unknown host"
    if "invalid response size" in joined or "_bad_msg" in joined or "apiversion" in joined:
        return "not a Kafka broker (unexpected answer)"
    if "timed out" in joined or "_timed_out" in joined:
        return "timed out"
    if "brokers are down" in joined or "transport" in joined:
        return "no broker answers"
    return (texts[0] if texts else "no broker answers")[:200]


def kafka_down(bootstrap: str, reason: str, cluster: str | None = None) -> str:
    """The one line for a Kafka cluster that cannot be reached."""
    which = f" (cluster {cluster})" if cluster else ""
    return f"cannot reach Kafka at {bootstrap}{which}: {reason} ({KAFKA_HINT})"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it (explicitly or while handling), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_outage(exc: BaseException, conns: Connections | None) -> str | None:
    """The one line for an exception that means Kafka or PostgreSQL is out of reach, else None (a bug or a
    refusal with its own message). `conns` say where the command was talking to (masked in the line)."""
    import psycopg
    from confluent_kafka import KafkaException

    from scalebox_stream.kafka.errors import describe_refusal

    kafka = conns.kafka if conns and conns.kafka else "the configured bootstrap servers"
    dsn = conns.pg if conns and conns.pg else ""
    for cause in _chain(exc):
        if isinstance(cause, ServiceDown):
            return str(cause)
        if isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError):
            return pg_down(dsn, str(cause)) if dsn else f"cannot reach PostgreSQL: {pg_reason(str(cause))[0]}"
        if (refusal := describe_refusal(cause, _user(conns))) is not None:
            return refusal
        if isinstance(cause, KafkaException):
            error = cause.args[0] if cause.args else None
            text = error.str() if hasattr(error, "str") else str(cause)
            name = error.name() if hasattr(error, "name") else ""
            return kafka_down(kafka, kafka_reason([f"{name} {text}"])) if name in _KAFKA_UNREACHABLE else None
        if isinstance(cause, RuntimeError) and "not acknowledged by Kafka" in str(cause):
            return kafka_down(kafka, str(cause))
    return None


def _user(conns: Connections | None) -> str:
    """The SASL user this process logs in to its Kafka as ('' if none or unknown)."""
    from scalebox_stream.kafka.security import client_security, username

    try:
        return username(client_security(conns.kafka if conns else None))
    except ValueError:
        return ""


def probe_kafka(bootstrap: str, timeout_s: float = 5.0, cluster: str | None = None) -> None:
    """Ask the cluster for its metadata; raise ServiceDown as soon as every bootstrap broker is known down
    (librdkafka reports it within a moment of the refused connection), or after `timeout_s`."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    from scalebox_stream.kafka.config import admin_config
    from scalebox_stream.kafka.errors import refused_for_good, security_problem
    from scalebox_stream.kafka.security import KafkaSecurityError, username

    errors: list[KafkaError] = []
    try:
        config = admin_config(bootstrap, error_cb=errors.append, log_level=0)
        admin = AdminClient(config)
    except KafkaSecurityError as exc:
        raise ServiceDown(f"Kafka client security settings: {exc}") from None
    except KafkaException as exc:
        raise ServiceDown(kafka_down(bootstrap, f"bad client settings ({exc.args[0].str()})", cluster)) from None
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=0.25)
            return
        except KafkaException as exc:
            last = exc.args[0]
        admin.poll(0.05)
        refused = next((e for e in errors if refused_for_good(e)), None)
        if refused is not None:
            which = f" (cluster {cluster})" if cluster else ""
            raise ServiceDown(f"Kafka at {bootstrap}{which}: {security_problem(refused, username(config))}")
        down = any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in errors)
        if down or time.monotonic() >= deadline:
            telling = [f"{e.name()} {e.str()}" for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
            reason = kafka_reason(telling or [f"{last.name()} {last.str()}"])
            if not down and not telling:
                reason = f"no answer within {timeout_s:g}s"
            if "security.protocol" not in config and reason.startswith(("no broker answers", "no answer within")):
                reason += f"; a secured cluster? {SECURITY_HINT}"
            raise ServiceDown(kafka_down(bootstrap, reason, cluster))


def probe_pg(dsn: str, timeout_s: float = 5.0) -> None:
    """Open and close one connection; raise ServiceDown saying why it failed."""
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=max(1, round(timeout_s))).close()
    except psycopg.ProgrammingError as exc:  # libpq could not parse the DSN
        reason = " ".join(scrub(str(exc), dsn).split())
        raise ServiceDown(f"invalid PostgreSQL DSN {mask_dsn(dsn)}: {reason} ({PG_SETTINGS_HINT})") from None
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise ServiceDown(pg_down(dsn, str(exc))) from None
