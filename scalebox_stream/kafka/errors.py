"""What the client library's error codes mean to scalebox (the codes stay in the kafka layer; policies get
booleans)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

from scalebox_stream.kafka.client_log import GATE

NOT_A_MEMBER = frozenset({KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION,
                          KafkaError.FENCED_INSTANCE_ID})
"""Error codes by which the group coordinator says the committing consumer is not (or no longer) a member."""


def refuses_membership(error_code: int | None) -> bool:
    """Whether a failure with `error_code` is the group coordinator refusing the committer as a non-member."""
    return error_code in NOT_A_MEMBER


def failure_refuses_membership(exc: BaseException) -> bool:
    """Whether a failed transaction (`exc`) says the broker refused the committer as a non-member."""
    return isinstance(exc, KafkaException) and refuses_membership(exc.args[0].code())


AUTHORIZATION_FAILED = {KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic", KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
                        KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
                        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id"}
"""Error codes by which the broker refuses an authenticated client an operation (an ACL is missing)."""


class KafkaAccessDenied(RuntimeError):
    """The cluster refused this client: bad credentials, an untrusted certificate, or a missing ACL."""


def security_problem(error: KafkaError, user: str = "", what: str = "") -> str | None:
    """One plain line for an error that means the cluster refused us (None for any other error).

    `user` is the SASL user the client logs in as; `what` names the resource the failed request was about
    (a topic, a group), when the caller knows it.
    """
    code, text = error.code(), _short(error.str())
    lowered = text.lower()
    if code == KafkaError._AUTHENTICATION or code == KafkaError.SASL_AUTHENTICATION_FAILED:
        if "ssl" in lowered and "certificate" in lowered:
            return _certificate(lowered, text)
        who = f" for user {user}" if user else ""
        return f"Kafka authentication failed{who} (check the password file and the SASL mechanism): {text}"
    if code == KafkaError._SSL or "certificate verify failed" in lowered:
        return _certificate(lowered, text)
    if code in AUTHORIZATION_FAILED:
        kind = AUTHORIZATION_FAILED[code]
        who = f"user {user}" if user else "this client"
        about = f" {what}" if what else ""
        return f"Kafka refused {who}: not authorized for {kind}{about} (an ACL is missing): {text}"
    if code == KafkaError.UNSUPPORTED_SASL_MECHANISM or code == KafkaError.ILLEGAL_SASL_STATE:
        return f"Kafka refused the SASL login (check sasl.mechanism and security.protocol): {text}"
    return None


def _short(text: str, limit: int = 300) -> str:
    """A broker's error text without the request dump Java appends to some of them."""
    head = text.split(" Request(processor=", 1)[0].split(": Request(processor=", 1)[0]
    return head if len(head) <= limit else head[:limit] + "..."


def _certificate(lowered: str, text: str) -> str:
    if "certificate verify failed" in lowered or "unable to get local issuer" in lowered:
        return (f"Kafka broker certificate not trusted (check ssl.ca.location, and that the broker's name "
                f"matches its certificate): {text}")
    if "handshake" in lowered or "alert" in lowered:
        return f"TLS handshake with Kafka failed (a client certificate the broker does not trust?): {text}"
    return f"TLS with Kafka failed: {text}"


def raise_on_refusal(user: str = ""):  # noqa: ANN201 - a librdkafka error callback
    """An `error_cb` that turns a refusal (authentication, TLS trust) into `KafkaAccessDenied` raised from the
    client's poll/flush, instead of librdkafka retrying forever; other errors are left to librdkafka (and said
    through the process's `client_log.GATE`, with its log lines: once, not at every retry)."""

    def error_cb(error: KafkaError) -> None:
        if error.code() not in AUTHORIZATION_FAILED and refused_for_good(error):  # ACLs: said per request
            raise KafkaAccessDenied(security_problem(error, user) or error.str())
        GATE.say(logging.WARNING, error.str())

    return error_cb


def refused_for_good(error: KafkaError) -> bool:
    """Whether retrying cannot help: the broker rejected our credentials, or its certificate is not trusted
    (a TLS handshake that merely broke off is retried)."""
    lowered = error.str().lower()
    return (error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
            or "certificate verify failed" in lowered)


def describe_refusal(exc: BaseException, user: str = "") -> str | None:
    """The plain line for a KafkaException (or KafkaAccessDenied) that means the cluster refused us."""
    if isinstance(exc, KafkaAccessDenied):
        return str(exc)
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return security_problem(exc.args[0], user)
    return None
