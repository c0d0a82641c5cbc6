"""What a process logs of librdkafka's lines while a broker is down and when it is back (`policy.kafka_log`), and
the gate every client's lines pass (`kafka.client_log`). The texts are librdkafka's, from a chaos run's logs."""

from __future__ import annotations

import logging
import time

import pytest

from scalebox_stream.kafka.client_log import ClientLog, LibrdkafkaLogger, tcp_reachable
from scalebox_stream.policy.kafka_log import KafkaLogPolicy, Line, repeat_key, span, unreachable_broker

BROKER = "127.0.0.1:19092"
LOGGED = ("FAIL [rdkafka#consumer-5] [thrd:sasl_plaintext://127.0.0.1:19092/bootstrap]: "
          "sasl_plaintext://127.0.0.1:19092/bootstrap: Connect to ipv4#127.0.0.1:19092 failed: Connection refused "
          "(after 0ms in state CONNECT)")
"""A refused connection as a client's log line (facility, client, thread, then the message)."""
EVENT = ("sasl_plaintext://127.0.0.1:19092/1: Connect to ipv4#127.0.0.1:19092 failed: Connection refused "
         "(after 0ms in state CONNECT, 1 identical error(s) suppressed)")
"""The same, as another client's error event."""
DOWN = "1/1 brokers are down"
GETPID = ("GETPID [rdkafka#producer-8] [thrd:main]: Failed to acquire transactional PID from broker "
          "TxnCoordinator/1: Broker: Coordinator load in progress: retrying")


def _run(policy: KafkaLogPolicy, down: tuple[float, float], until: float, every: float = 0.05,
         reported: tuple[float, float] | None = None) -> list[Line]:
    """The broker is down from down[0] to down[1]; two clients report each refused connection on both channels every
    `every` s while they are delivered (`reported`, by default while it is down); every second the gate ticks and
    probes what the policy asks it to, until `until`: everything the policy said."""
    reported = reported or down
    lines: list[Line] = []
    now, next_tick = 0.0, 1.0
    while now <= until:
        if reported[0] <= now < reported[1]:
            lines += policy.observe(logging.ERROR, LOGGED, now)
            lines += policy.observe(logging.WARNING, EVENT, now)
        if now >= next_tick:
            lines += policy.tick(now)
            for broker in policy.due_probes(now):
                lines += policy.probed(broker, not down[0] <= now < down[1], now)
            next_tick += 1.0
        now = round(now + every, 3)
    return lines


def test_a_broker_down_for_ten_seconds_is_one_line_when_it_starts_and_one_when_it_is_over() -> None:
    policy = KafkaLogPolicy()
    lines = _run(policy, (5.0, 15.0), until=60.0)
    assert [line.level for line in lines] == [logging.WARNING, logging.INFO], lines
    assert lines[0].text == (f"Kafka broker {BROKER} unreachable (Connection refused); retrying (a summary every "
                             "while as long as it lasts)")
    assert lines[1].text == (f"Kafka broker {BROKER} reachable again after 10 s (400 failed connection attempt(s) "
                             "meanwhile)")
    assert policy.idle


def test_lines_delivered_late_say_nothing_of_a_broker_that_is_back() -> None:
    """A client polled late (its application was busy) delivers the failures of an outage that is over."""
    policy = KafkaLogPolicy()
    assert _run(policy, (5.0, 15.0), until=60.0, reported=(20.0, 21.0)) == []
    assert policy.idle


def test_a_broker_back_before_the_first_probe_is_not_mentioned() -> None:
    policy = KafkaLogPolicy()
    assert _run(policy, (5.2, 5.7), until=30.0) == []


def test_a_long_outage_is_summarised_ever_further_apart() -> None:
    policy = KafkaLogPolicy()
    lines = _run(policy, (0.0, 3000.0), until=3030.0, every=1.0)
    summaries = [line.text for line in lines if "still retrying" in line.text]
    assert summaries[0] == (f"Kafka broker {BROKER} unreachable for 31 s (64 failed connection attempt(s), the last: "
                            "Connection refused); still retrying")
    assert [s.split(" for ", 1)[1].split(" (")[0] for s in summaries] == [
        "31 s", "95 s", "3 min", "7 min", "15 min", "25 min", "35 min", "45 min"]  # gaps 30 s, 1, 2, 4, 8, 10 min
    assert lines[-1].text.startswith(f"Kafka broker {BROKER} reachable again after 50 min (6000 failed")
    assert len(lines) == 10


def test_a_week_without_the_broker_is_about_a_thousand_lines_not_millions() -> None:
    policy = KafkaLogPolicy()
    lines = _run(policy, (0.0, 7 * 86400.0), until=7 * 86400.0 + 60, every=10.0)
    assert 1000 < len(lines) < 1020
    assert lines[-1].text.startswith(f"Kafka broker {BROKER} reachable again after 168 h 0 min")


def test_a_new_error_shows_at_once_even_during_an_outage_and_its_repeats_as_one_count() -> None:
    policy = KafkaLogPolicy()
    assert policy.observe(logging.ERROR, LOGGED, 0.0) == []
    assert len(policy.probed(BROKER, False, 0.5)) == 1
    assert policy.observe(logging.WARNING, GETPID, 1.0) == [Line(logging.WARNING, GETPID)]
    assert policy.observe(logging.WARNING, GETPID.replace("producer-8", "producer-9"), 2.0) == []
    assert policy.observe(logging.WARNING, GETPID, 3.0) == []
    other = GETPID.replace("Coordinator load in progress", "Not coordinator")
    assert policy.observe(logging.WARNING, other, 4.0) == [Line(logging.WARNING, other)], "another error: new"
    assert policy.tick(30.0) == []
    said = policy.tick(61.0)
    assert said == [Line(logging.WARNING, f"{GETPID} (said 2 more time(s) in the last 60 s)")], "other: said once"


def test_a_line_said_again_after_its_window_shows_again() -> None:
    policy = KafkaLogPolicy()
    assert policy.observe(logging.WARNING, DOWN, 0.0) == [Line(logging.WARNING, DOWN)]
    assert policy.observe(logging.WARNING, "0/2 brokers are down", 10.0) == []
    assert policy.observe(logging.WARNING, DOWN, 70.0) == [
        Line(logging.WARNING, "0/2 brokers are down (said 1 more time(s) in the last 70 s)"),
        Line(logging.WARNING, DOWN)]


def test_brokers_down_adds_nothing_during_an_outage() -> None:
    policy = KafkaLogPolicy()
    assert policy.observe(logging.WARNING, DOWN, 0.0) == [Line(logging.WARNING, DOWN)], "no outage yet: said"
    assert policy.observe(logging.ERROR, LOGGED, 0.1) == []
    assert policy.observe(logging.WARNING, "0/2 brokers are down", 70.0) == []


def test_each_broker_has_its_outage() -> None:
    policy = KafkaLogPolicy()
    other = LOGGED.replace("19092", "19093")
    policy.observe(logging.ERROR, LOGGED, 0.0)
    policy.observe(logging.ERROR, other, 0.5)
    assert policy.due_probes(1.0) == [BROKER, "127.0.0.1:19093"]
    assert len(policy.probed(BROKER, False, 1.0) + policy.probed("127.0.0.1:19093", False, 1.0)) == 2
    assert policy.due_probes(1.5) == [] and policy.due_probes(2.0) == [BROKER, "127.0.0.1:19093"]
    over = policy.probed(BROKER, True, 2.0) + policy.probed("127.0.0.1:19093", False, 2.0)
    assert [line.text.split(" reachable")[0] for line in over] == [f"Kafka broker {BROKER}"]
    assert not policy.idle and policy.due_probes(3.0) == ["127.0.0.1:19093"]
    assert policy.probed("10.0.0.9:9092", True, 3.0) == [], "not a suspect"


def test_probes_come_less_often_after_the_first_minute() -> None:
    policy = KafkaLogPolicy()
    policy.observe(logging.ERROR, LOGGED, 0.0)
    policy.probed(BROKER, False, 61.0)
    assert policy.due_probes(65.0) == [] and policy.due_probes(66.0) == [BROKER]


@pytest.mark.parametrize(("text", "found"), [
    (LOGGED, (BROKER, "Connection refused")),
    (EVENT, (BROKER, "Connection refused")),
    ("sasl_plaintext://kafka:9092/bootstrap: Failed to resolve 'kafka:9092': Name or service not known "
     "(after 1ms in state CONNECT)", ("kafka:9092", "Failed to resolve 'kafka:9092': Name or service not known")),
    ("ssl://b1:9093/1: Connection setup timed out in state CONNECT (after 30029ms in state CONNECT)",
     ("b1:9093", "Connection setup timed out in state CONNECT")),
    ("FAIL [rdkafka#producer-3] [thrd:sasl_plaintext://127.0.0.1:19092/1]: sasl_plaintext://127.0.0.1:19092/1: "
     "Disconnected: connection closed by peer: receive 0 after POLLIN (after 8413ms in state UP)", None),
    ("FAIL [rdkafka#consumer-4] [thrd:GroupCoordinator]: GroupCoordinator: 127.0.0.1:19092: Connect to "
     "ipv4#127.0.0.1:19092 failed: Connection refused (after 2ms in state CONNECT)", (BROKER, "Connection refused")),
    ("GroupCoordinator: Connect to ipv4#127.0.0.1:19092 failed: Connection refused (after 0ms in state CONNECT)",
     (BROKER, "Connection refused")),
    ("GroupCoordinator: Failed to resolve 'kafka:9092': Name or service not known",
     ("kafka:9092", "Failed to resolve 'kafka:9092': Name or service not known")),
    ("ssl://b1:9093/1: Connect to ipv6#[::1]:9093 failed: Connection refused", ("[::1]:9093", "Connection refused")),
    ("GETPID [rdkafka#producer-3] [thrd:main]: Failed to acquire idempotence PID from broker 127.0.0.1:19092/1: "
     "Broker: Coordinator load in progress: retrying", None),
    (DOWN, None),
])
def test_which_lines_say_a_broker_cannot_be_reached(text: str, found: tuple[str, str] | None) -> None:
    assert unreachable_broker(text) == found


def test_repeats_are_the_same_line_from_any_client_at_any_count() -> None:
    assert repeat_key(GETPID) == repeat_key(GETPID.replace("producer-8", "producer-12"))
    assert repeat_key(DOWN) == repeat_key("0/2 brokers are down")
    assert repeat_key(GETPID) != repeat_key(GETPID.replace("load in progress", "not available"))
    assert "127.0.0.1:19092" in repeat_key("GroupCoordinator: 127.0.0.1:19092: Disconnected (after 7789ms in state UP)")


def test_span() -> None:
    assert [span(s) for s in (-1, 12.4, 119, 120, 7199, 7200, 7 * 86400)] == [
        "0 s", "12 s", "119 s", "2 min", "119 min", "2 h 0 min", "168 h 0 min"]


def test_the_gate_logs_what_the_policy_says_and_probes_while_something_is_open(
        caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.librdkafka")
    up = [False]
    probed: list[str] = []
    gate = ClientLog(logger, tick_s=0.01, probe=lambda broker: probed.append(broker) or up[0])
    client_logger = LibrdkafkaLogger(gate)
    with caplog.at_level(logging.INFO, logger="test.librdkafka"):
        for _ in range(50):  # as confluent_kafka calls it
            client_logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-5", LOGGED.split("] ", 1)[1])
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        up[0] = True
        while not any("reachable again" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.01)
    said = [r.getMessage() for r in caplog.records if r.name == "test.librdkafka"]
    assert len(said) == 2 and said[0].startswith(f"Kafka broker {BROKER} unreachable"), said
    assert said[1].startswith(f"Kafka broker {BROKER} reachable again after ") and "(50 failed" in said[1], said
    assert set(probed) == {BROKER}


def test_a_probe_connects_to_the_address() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert tcp_reachable(address)
    assert not tcp_reachable(address, timeout_s=1)
    assert not tcp_reachable("no-such-host.invalid:9092", timeout_s=1)
