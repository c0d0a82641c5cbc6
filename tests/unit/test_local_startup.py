"""The broker start-up wait: patient while the log advances, firm when it goes silent."""

from scalebox_stream.local.startup import STARTUP_CEILING_S, give_up_reason, silent_for


def test_silence_counts_from_the_last_log_write() -> None:
    assert silent_for(now=100.0, waiting_since=10.0, log_touched=95.0) == 5.0


def test_a_log_older_than_the_wait_counts_from_the_wait() -> None:
    # The log of the previous run must not make a fresh start look stalled.
    assert silent_for(now=100.0, waiting_since=90.0, log_touched=3.0) == 10.0
    assert silent_for(now=100.0, waiting_since=90.0, log_touched=None) == 10.0


def test_a_clock_step_back_is_no_negative_silence() -> None:
    assert silent_for(now=100.0, waiting_since=90.0, log_touched=120.0) == 0.0


def test_keeps_waiting_past_the_stall_limit_while_the_log_advances() -> None:
    assert give_up_reason(waited_s=600.0, silent_s=1.0, stall_s=90.0) is None


def test_gives_up_when_the_log_is_silent_for_the_stall_limit() -> None:
    reason = give_up_reason(waited_s=120.0, silent_s=90.0, stall_s=90.0)
    assert reason is not None and "silent for 90s" in reason


def test_gives_up_at_the_ceiling_even_while_the_log_advances() -> None:
    reason = give_up_reason(waited_s=STARTUP_CEILING_S, silent_s=0.5, stall_s=90.0)
    assert reason is not None and "still starting" in reason
