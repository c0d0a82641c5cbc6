from confluent_kafka import KafkaError

from scalebox_stream.kafka.errors import refuses_membership
from scalebox_stream.policy.membership import REJOIN_AFTER_S, absent_since, membership_evidence, must_rejoin


def test_a_committed_transaction_proves_membership():
    assert membership_evidence(True) is True


def test_the_coordinator_refusing_the_member_is_evidence_of_absence():
    assert membership_evidence(False, refuses_membership(KafkaError.UNKNOWN_MEMBER_ID)) is False
    assert membership_evidence(False, refuses_membership(KafkaError.ILLEGAL_GENERATION)) is False


def test_other_failures_say_nothing_about_membership():
    assert membership_evidence(False, refuses_membership(KafkaError._TRANSPORT)) is None
    assert membership_evidence(False, refuses_membership(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)) is None
    assert membership_evidence(False, refuses_membership(None)) is None


def test_the_policy_takes_a_boolean_and_imports_no_client_library():
    from pathlib import Path

    import scalebox_stream.policy.membership as membership

    assert membership_evidence(False, True) is False and membership_evidence(False) is None
    assert "confluent_kafka" not in Path(membership.__file__).read_text()


def test_absence_starts_on_the_first_refusal():
    assert absent_since(False, None, 100.0) == 100.0


def test_a_continuing_absence_keeps_its_start():
    assert absent_since(False, 100.0, 130.0) == 100.0


def test_presence_ends_the_absence():
    assert absent_since(True, 100.0, 130.0) is None


def test_a_failure_that_says_nothing_starts_the_count_again():
    assert absent_since(None, 100.0, 130.0) is None


def test_rejoin_only_after_the_absence_has_lasted_long_enough():
    assert not must_rejoin(None, 1000.0)
    assert not must_rejoin(100.0, 100.0 + REJOIN_AFTER_S - 0.1)
    assert must_rejoin(100.0, 100.0 + REJOIN_AFTER_S)
    assert must_rejoin(100.0, 105.0, after_s=5.0)


def test_the_wedge_seen_in_the_chaos_test_leads_to_a_rejoin():
    """UNKNOWN_MEMBER_ID twice a second for minutes, as agent 2 logged it."""
    since, t = None, 0.0
    while not must_rejoin(since, t):
        since = absent_since(membership_evidence(False, refuses_membership(KafkaError.UNKNOWN_MEMBER_ID)), since, t)
        t += 0.5
    assert REJOIN_AFTER_S <= t <= REJOIN_AFTER_S + 1
