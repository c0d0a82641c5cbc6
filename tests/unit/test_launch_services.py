"""Services out of reach become one line naming the service, where, why and what to try; DSN passwords are
never shown. Pure mappings from exceptions and error texts (no service is contacted)."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from scalebox_stream.config import Connections
from scalebox_stream.launch.errors import OperationError
from scalebox_stream.launch.services import (
    ServiceDown,
    describe_outage,
    kafka_reason,
    mask_dsn,
    pg_address,
    pg_down,
    scrub,
)

KAFKA_HINT = "(is it running? try: scalebox local up, or check --kafka / SCALEBOX_KAFKA)"
PG_HINT = "(try: scalebox local up, or check --pg / SCALEBOX_PG)"
DSN = "postgresql://sbx:hunter2@db.example:6543/tasks"
CONNS = Connections("k1:9092,k2:9092", DSN)


@pytest.mark.parametrize(("dsn", "masked"), [
    ("postgresql://sbx:hunter2@db:5432/tasks", "postgresql://sbx:***@db:5432/tasks"),
    ("postgres://sbx:p%40ss@db/tasks?sslmode=require", "postgres://sbx:***@db/tasks?sslmode=require"),
    ("postgresql://sbx@db/tasks?password=hunter2&sslmode=require",
     "postgresql://sbx@db/tasks?password=***&sslmode=require"),
    ("host=db user=sbx password=hunter2 dbname=tasks", "host=db user=sbx password=*** dbname=tasks"),
    ("host=db password='two words' dbname=tasks", "host=db password=*** dbname=tasks"),
    ("postgresql://postgres@127.0.0.1:15432/scalebox", "postgresql://postgres@127.0.0.1:15432/scalebox"),
])
def test_mask_dsn_hides_the_password_in_every_form(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


def test_pg_address_names_host_port_and_database_only() -> None:
    assert pg_address(DSN) == "db.example:6543/tasks"
    assert pg_address("host=h password=x dbname=d") == "h:5432/d"
    assert pg_address("not a dsn") == "not a dsn"


def test_scrub_removes_the_password_wherever_a_text_repeats_it() -> None:
    assert scrub(f"failed for {DSN} with hunter2", DSN) == ("failed for postgresql://sbx:***@db.example:6543/tasks "
                                                             "with ***")


@pytest.mark.parametrize(("text", "line"), [
    ('connection failed: connection to server at "10.0.0.5", port 6543 failed: Connection refused\n\tIs the server '
     "running on that host and accepting TCP/IP connections?",
     f"cannot reach PostgreSQL at db.example:6543/tasks: connection refused {PG_HINT}"),
    ("failed to resolve host 'db.example': [Errno -2] Name or service not known",
     f"cannot reach PostgreSQL at db.example:6543/tasks: unknown host {PG_HINT}"),
    ("connection failed: timeout expired",
     f"cannot reach PostgreSQL at db.example:6543/tasks: timed out {PG_HINT}"),
    ('connection failed: connection to server at "10.0.0.5", port 6543 failed: FATAL:  password authentication '
     'failed for user "sbx"',
     'PostgreSQL at db.example:6543/tasks refused the connection: password authentication failed for user "sbx" '
     "(check --pg / SCALEBOX_PG)"),
    ("consuming input failed: server closed the connection unexpectedly",
     f"cannot reach PostgreSQL at db.example:6543/tasks: the connection was lost {PG_HINT}"),
])
def test_pg_errors_become_one_line(text: str, line: str) -> None:
    assert pg_down(DSN, text) == line
    assert describe_outage(psycopg.OperationalError(text), CONNS) == line


def test_a_pg_error_that_quotes_the_password_never_shows_it() -> None:
    line = describe_outage(psycopg.OperationalError("FATAL:  bad option hunter2 in postgresql://sbx:hunter2@x/y"),
                           CONNS)
    assert line is not None and "hunter2" not in line and "\n" not in line


@pytest.mark.parametrize(("texts", "reason"), [
    (["_TRANSPORT k1:9092/bootstrap: Connect to ipv4#10.0.0.1:9092 failed: Connection refused"],
     "connection refused"),
    (["_RESOLVE k1:9092/bootstrap: Failed to resolve 'k1:9092': Name or service not known"], "unknown host"),
    (["_BAD_MSG k1:9092/bootstrap: Receive failed: Invalid response size 1213486160"],
     "not a Kafka broker (unexpected answer)"),
    (["_TIMED_OUT Failed to get metadata: Local: Timed out"], "timed out"),
    (["_ALL_BROKERS_DOWN 2/2 brokers are down"], "no broker answers"),
])
def test_kafka_reasons(texts: list[str], reason: str) -> None:
    assert kafka_reason(texts) == reason


def test_kafka_exceptions_and_what_wraps_them_become_one_line() -> None:
    down = KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"))
    expected = f"cannot reach Kafka at k1:9092,k2:9092: no broker answers {KAFKA_HINT}"
    assert describe_outage(down, CONNS) == expected
    try:
        try:
            raise down
        except KafkaException as exc:
            raise RuntimeError("Kafka did not start a producer: ...") from exc
    except RuntimeError as wrapped:
        assert describe_outage(wrapped, CONNS) == expected
    timed_out = KafkaException(KafkaError(KafkaError._TIMED_OUT, "Local: Timed out"))
    assert describe_outage(timed_out, CONNS) == f"cannot reach Kafka at k1:9092,k2:9092: timed out {KAFKA_HINT}"
    unacked = RuntimeError("3 record(s) not acknowledged by Kafka within 30s")
    assert describe_outage(unacked, CONNS) == (f"cannot reach Kafka at k1:9092,k2:9092: 3 record(s) not "
                                               f"acknowledged by Kafka within 30s {KAFKA_HINT}")


def test_service_down_is_an_operation_error_with_its_own_line_and_exit_code() -> None:
    down = ServiceDown("cannot reach Kafka at x:1: connection refused")
    assert isinstance(down, OperationError) and down.code == 1
    assert describe_outage(down, None) == "cannot reach Kafka at x:1: connection refused"


@pytest.mark.parametrize("exc", [ValueError("a bug"), RuntimeError("no topic sbx.tasks.a.m"), KeyError("x"),
                                 psycopg.errors.UniqueViolation("duplicate key"),
                                 KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS, "exists")),
                                 KafkaException(KafkaError(KafkaError.POLICY_VIOLATION, "not allowed"))])
def test_other_errors_are_not_outages(exc: Exception) -> None:
    assert describe_outage(exc, CONNS) is None


def test_without_known_connections_the_line_still_names_the_service() -> None:
    assert describe_outage(psycopg.OperationalError("Connection refused"), None) == (
        "cannot reach PostgreSQL: connection refused")
    kafka = describe_outage(KafkaException(KafkaError(KafkaError._TRANSPORT, "x")), Connections("", ""))
    assert kafka is not None and kafka.startswith("cannot reach Kafka at the configured bootstrap servers:")


def _app() -> object:
    from scalebox_stream.cli.common import ScaleboxApp

    app = ScaleboxApp(pretty_exceptions_enable=False)

    @app.command()
    def lost() -> None:
        raise psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")

    @app.command()
    def bug() -> None:
        raise ValueError("a bug stays a traceback")

    return app


def test_the_scalebox_command_ends_an_outage_mid_command_with_one_line(capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scalebox_stream.cli.common._in_use", None)  # no command connected in this process
    with pytest.raises(SystemExit) as ended:
        _app()(["lost"], prog_name="scalebox")
    assert ended.value.code == 1
    assert capsys.readouterr().err == "error: cannot reach PostgreSQL: the connection was lost\n"
    with pytest.raises(ValueError, match="a bug stays a traceback"):
        _app()(["bug"], prog_name="scalebox")


def test_explain_names_the_service_or_keeps_the_errors_own_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from scalebox_stream.cli.common import explain

    monkeypatch.setattr("scalebox_stream.cli.common._in_use", CONNS)
    try:
        try:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "Local: Message timed out"))
        except KafkaException as exc:
            raise RuntimeError("Kafka did not commit the transaction: ...") from exc
    except RuntimeError as wrapped:
        assert explain(wrapped) == f"cannot reach Kafka at k1:9092,k2:9092: timed out {KAFKA_HINT}"
    assert explain(RuntimeError("agent-m exited with code 3")) == "agent-m exited with code 3"
