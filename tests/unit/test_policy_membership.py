from scalebox_stream.policy.membership import REJOIN_AFTER_S, absent_since, must_rejoin


def test_absence_starts_on_the_first_look_that_misses_the_member():
    assert absent_since(False, None, 100.0) == 100.0


def test_a_continuing_absence_keeps_its_start():
    assert absent_since(False, 100.0, 130.0) == 100.0


def test_presence_ends_the_absence():
    assert absent_since(True, 100.0, 130.0) is None


def test_a_look_without_an_answer_starts_the_count_again():
    assert absent_since(None, 100.0, 130.0) is None


def test_rejoin_only_after_the_absence_has_lasted_long_enough():
    assert not must_rejoin(None, 1000.0)
    assert not must_rejoin(100.0, 100.0 + REJOIN_AFTER_S - 0.1)
    assert must_rejoin(100.0, 100.0 + REJOIN_AFTER_S)
    assert must_rejoin(100.0, 105.0, after_s=5.0)


def test_a_broker_down_for_long_does_not_make_the_agent_rejoin_as_it_returns():
    since = absent_since(False, None, 0.0)
    for t in range(5, 200, 5):  # broker down: no answers
        since = absent_since(None, since, float(t))
    since = absent_since(False, since, 200.0)  # back, and the consumer has not rejoined yet
    assert not must_rejoin(since, 200.0)
