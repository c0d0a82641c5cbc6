"""Pure admission decisions."""

from scalebox_stream.policy.admission import (
    GB,
    check_verdict,
    free_space_verdict,
    quota_verdict,
    recheck_delay,
)


def test_quota_admits_below_and_refuses_at_or_above():
    assert quota_verdict({"/d": 1}, {"/d": GB - 1}).admitted
    refused = quota_verdict({"/d": 1}, {"/d": GB})
    assert not refused.admitted and "dir_quota_gb 1" in refused.reason


def test_free_space():
    assert free_space_verdict({"/d": 2}, {"/d": 3 * GB}).admitted
    assert not free_space_verdict({"/d": 2}, {"/d": GB}).admitted


def test_check_and_backoff():
    assert check_verdict(0).admitted
    refused = check_verdict(10, "counter is 0\n")
    assert not refused.admitted and refused.reason == "check exited 10: counter is 0"
    assert [recheck_delay(n) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 4.0, 10.0]
