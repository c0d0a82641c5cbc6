"""What the client library's error codes mean to scalebox (the codes stay in the kafka layer; policies get
booleans)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

NOT_A_MEMBER = frozenset({KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION,
                          KafkaError.FENCED_INSTANCE_ID})
"""Error codes by which the group coordinator says the committing consumer is not (or no longer) a member."""


def refuses_membership(error_code: int | None) -> bool:
    """Whether a failure with `error_code` is the group coordinator refusing the committer as a non-member."""
    return error_code in NOT_A_MEMBER


def failure_refuses_membership(exc: BaseException) -> bool:
    """Whether a failed transaction (`exc`) says the broker refused the committer as a non-member."""
    return isinstance(exc, KafkaException) and refuses_membership(exc.args[0].code())
