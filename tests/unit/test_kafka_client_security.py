"""Client security is configured once (a properties file, SCALEBOX_KAFKA_* variables, the local file) and every
client configuration carries it; secrets come from files and never show; refusals read plainly."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from scalebox_stream.kafka import config as kafka_config
from scalebox_stream.kafka.errors import (
    KafkaAccessDenied,
    describe_refusal,
    raise_on_refusal,
    refused_for_good,
    security_problem,
)
from scalebox_stream.kafka.security import (
    LOCAL_FILE,
    KafkaSecurityError,
    client_security,
    forwarded_env,
    forwarded_files,
    parse_properties,
    redacted,
)
from scalebox_stream.mirror.properties import java_client_properties, masked


def _secret(tmp_path: Path, text: str = "s3cret\n") -> Path:
    path = tmp_path / "password"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_environment_alone_configures_scram_over_tls_with_the_password_read_from_a_file(tmp_path: Path) -> None:
    env = {"SCALEBOX_HOME": str(tmp_path), "SCALEBOX_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "SCALEBOX_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SCALEBOX_KAFKA_SASL_USERNAME": "agent",
           "SCALEBOX_KAFKA_SASL_PASSWORD_FILE": str(_secret(tmp_path)),
           "SCALEBOX_KAFKA_SSL_CA_LOCATION": "/ca.pem"}
    assert client_security("b:1", env) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                           "sasl.username": "agent", "sasl.password": "s3cret",
                                           "ssl.ca.location": "/ca.pem"}


def test_a_properties_file_is_read_and_the_environment_wins_over_it(tmp_path: Path) -> None:
    props = tmp_path / "client.properties"
    props.write_text(f"# comment\nsecurity.protocol=SSL\nssl.certificate.location = /c.pem\n"
                     f"ssl.key.location: /k.pem\nssl.key.password.file={_secret(tmp_path, 'kp')}\n")
    env = {"SCALEBOX_HOME": str(tmp_path), "SCALEBOX_KAFKA_CONFIG": str(props),
           "SCALEBOX_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    assert client_security("b:1", env) == {"security.protocol": "SASL_SSL", "ssl.certificate.location": "/c.pem",
                                           "ssl.key.location": "/k.pem", "ssl.key.password": "kp"}


def test_a_password_in_the_environment_or_in_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KafkaSecurityError, match="SCALEBOX_KAFKA_SASL_PASSWORD_FILE"):
        client_security("b:1", {"SCALEBOX_HOME": str(tmp_path), "SCALEBOX_KAFKA_SASL_PASSWORD": "x"})
    props = tmp_path / "client.properties"
    props.write_text("sasl.username=u\nsasl.password=x\n")
    props.chmod(0o644)
    env = {"SCALEBOX_HOME": str(tmp_path), "SCALEBOX_KAFKA_CONFIG": str(props)}
    with pytest.raises(KafkaSecurityError, match="chmod 600"):
        client_security("b:1", env)
    props.chmod(0o600)
    assert client_security("b:1", env)["sasl.password"] == "x"


def test_a_missing_password_file_is_named(tmp_path: Path) -> None:
    env = {"SCALEBOX_HOME": str(tmp_path), "SCALEBOX_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "nope")}
    with pytest.raises(KafkaSecurityError, match="cannot read sasl.password from .*nope"):
        client_security("b:1", env)


def test_the_local_file_applies_to_the_local_broker_only(tmp_path: Path) -> None:
    (tmp_path / LOCAL_FILE).write_text(f"scalebox.bootstrap=127.0.0.1:29092\nsecurity.protocol=SASL_PLAINTEXT\n"
                                       f"sasl.password.file={_secret(tmp_path)}\n")
    env = {"SCALEBOX_HOME": str(tmp_path)}
    assert client_security("127.0.0.1:29092", env) == {"security.protocol": "SASL_PLAINTEXT",
                                                       "sasl.password": "s3cret"}
    assert client_security("elsewhere:9092", env) == {}
    assert client_security("127.0.0.1:1,127.0.0.1:29092", env)["security.protocol"] == "SASL_PLAINTEXT"


def test_a_home_forwards_its_local_file_and_a_forwarded_file_applies_to_its_broker_only(tmp_path: Path) -> None:
    head, other = tmp_path / "head", tmp_path / "other"
    head.mkdir(), other.mkdir()
    (head / LOCAL_FILE).write_text(f"scalebox.bootstrap=127.0.0.1:29092\nsecurity.protocol=SASL_PLAINTEXT\n"
                                   f"sasl.password.file={_secret(tmp_path)}\n")
    (other / LOCAL_FILE).write_text("scalebox.bootstrap=127.0.0.1:39092\nsecurity.protocol=SASL_SSL\n")
    forwarded = forwarded_env("127.0.0.1:29092", {"SCALEBOX_HOME": str(head)})
    assert forwarded == {"SCALEBOX_KAFKA_CONFIG": str(head / LOCAL_FILE)}
    assert forwarded_env("elsewhere:9092", {"SCALEBOX_HOME": str(head)}) == {}
    child = {**forwarded, "SCALEBOX_HOME": str(other)}
    assert client_security("127.0.0.1:29092", child) == {"security.protocol": "SASL_PLAINTEXT",
                                                         "sasl.password": "s3cret"}
    assert client_security("127.0.0.1:39092", child) == {"security.protocol": "SASL_SSL"}  # its own home's
    assert client_security("elsewhere:9092", child) == {}
    assert forwarded_files("127.0.0.1:29092", {"SCALEBOX_HOME": str(head)}) == [head / LOCAL_FILE,
                                                                                 Path(_secret(tmp_path))]
    given = {"SCALEBOX_HOME": str(head), "SCALEBOX_KAFKA_SASL_USERNAME": "u", "SCALEBOX_KAFKA_SASL_PASSWORD_FILE": "/p"}
    assert forwarded_env("127.0.0.1:29092", given) == {"SCALEBOX_KAFKA_SASL_USERNAME": "u",
                                                       "SCALEBOX_KAFKA_SASL_PASSWORD_FILE": "/p",
                                                       "SCALEBOX_KAFKA_CONFIG": str(head / LOCAL_FILE)}


def test_every_client_configuration_carries_the_security_and_a_raising_error_callback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEBOX_HOME", str(tmp_path))
    monkeypatch.setenv("SCALEBOX_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SCALEBOX_KAFKA_SASL_USERNAME", "agent")
    for made in (kafka_config.producer_config("b:1", transactional_id="t"), kafka_config.consumer_config("b:1", "g"),
                 kafka_config.reader_config("b:1", "x"), kafka_config.admin_config("b:1")):
        assert made["security.protocol"] == "SASL_SSL" and made["sasl.username"] == "agent"
    assert callable(kafka_config.consumer_config("b:1", "g")["error_cb"])
    own = print
    assert kafka_config.producer_config("b:1", error_cb=own)["error_cb"] is own


def _error(code: int, text: str) -> KafkaError:
    return KafkaError(code, text)


def test_refusals_are_said_plainly() -> None:
    auth = _error(KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed during "
                  "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512")
    assert security_problem(auth, "agent").startswith("Kafka authentication failed for user agent")
    cert = _error(KafkaError._SSL, "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL "
                  "routines::certificate verify failed: broker certificate could not be verified")
    assert "certificate not trusted" in security_problem(cert)
    acl = _error(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization failed")
    assert "not authorized for topic sbx.apps" in security_problem(acl, "agent", "sbx.apps")
    assert security_problem(_error(KafkaError._TRANSPORT, "Connection refused")) is None
    assert refused_for_good(auth) and refused_for_good(cert) and not refused_for_good(acl)
    assert describe_refusal(KafkaException(acl), "u").startswith("Kafka refused user u")


def test_the_error_callback_raises_on_a_refused_login_and_not_on_a_lost_connection() -> None:
    callback = raise_on_refusal("agent")
    callback(_error(KafkaError._TRANSPORT, "Disconnected"))
    with pytest.raises(KafkaAccessDenied, match="authentication failed for user agent"):
        callback(_error(KafkaError._AUTHENTICATION, "invalid credentials"))


def test_secrets_never_show() -> None:
    assert redacted({"sasl.password": "p", "sasl.username": "u"}) == {"sasl.password": "***", "sasl.username": "u"}
    assert parse_properties("a=b=c\n! x\n") == {"a": "b=c"}


def test_mirror_maker_gets_java_properties_and_prints_them_masked(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n")
    java = java_client_properties({"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
                                   "sasl.username": "mm2", "sasl.password": 'p"w', "ssl.ca.location": "/ca.pem",
                                   "ssl.certificate.location": str(cert), "ssl.key.location": str(key)},
                                  lambda p: Path(p).read_text())
    assert java["security.protocol"] == "SASL_SSL" and java["ssl.truststore.type"] == "PEM"
    assert java["sasl.jaas.config"] == ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                                        'username="mm2" password="p\\"w";')
    assert java["ssl.keystore.key"].startswith("-----BEGIN PRIVATE KEY-----")
    shown = masked("a.sasl.jaas.config = secret\na.ssl.keystore.key = k\na.bootstrap.servers = b:1\n")
    assert shown == "a.sasl.jaas.config = ***\na.ssl.keystore.key = ***\na.bootstrap.servers = b:1\n"


def test_mirror_maker_properties_carry_each_clusters_security() -> None:
    from scalebox_stream.mirror.flows import Flow
    from scalebox_stream.mirror.properties import render

    text = render([Flow("home", "far", ("sbx.tasks.a.m",))], {"home": "h:1", "far": "f:1"},
                  security={"far": {"security.protocol": "SASL_SSL", "sasl.jaas.config": "x required;"}})
    assert "far.security.protocol = SASL_SSL" in text and "home.security.protocol" not in text
    assert "far.sasl.jaas.config = ***" in masked(text)


def test_an_agent_may_touch_only_its_own_app_and_only_an_operator_may_register_apps() -> None:
    from scalebox_stream.kafka.acls import agent_transactional_id, binding, grants

    agent = grants("agent", "a1", "primes")
    writes = {(g.name, g.prefixed) for g in agent if g.resource == "topic" and g.operation in ("write", "all")}
    assert ("sbx.tasks.primes.", True) in writes and ("sbx.events", False) in writes
    assert not any(name == "sbx.apps" or name.startswith("sbx.tasks.other") for name, _ in writes)
    assert all(g.principal == "User:a1" for g in agent)
    assert {g.name for g in agent if g.resource == "transactional_id"} == {"sbx-agent-primes."}
    assert agent_transactional_id("primes", "host-1").startswith("sbx-agent-primes.")
    operator = grants("operator", "User:CN=ops")
    assert any(g.resource == "topic" and g.name == "sbx." and g.prefixed and g.operation == "all" for g in operator)
    assert binding(agent[0]).principal == "User:a1"
    with pytest.raises(ValueError, match="one app"):
        grants("agent", "a1")


def test_transactional_producers_take_the_transaction_timeout_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(kafka_config.TRANSACTION_TIMEOUT_ENV, raising=False)
    assert kafka_config.producer_config("b:1", transactional_id="t")["transaction.timeout.ms"] == 60000
    monkeypatch.setenv(kafka_config.TRANSACTION_TIMEOUT_ENV, "10000")
    assert kafka_config.producer_config("b:1", transactional_id="t")["transaction.timeout.ms"] == 10000
    assert "transaction.timeout.ms" not in kafka_config.producer_config("b:1")
