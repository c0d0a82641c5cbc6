"""The process executor keeps an attempt's time limit on its reading thread (no timer thread per attempt): the
poll's wait, and a limit kept while the program's streams are closed, with and without a pidfd."""

import time
from pathlib import Path

import pytest

from scalebox_stream.executors import output
from scalebox_stream.executors.base import TIMEOUT_EXIT_CODE, ExecRequest
from scalebox_stream.executors.output import EXIT_CHECK_MS, _poll_ms
from scalebox_stream.executors.process import ProcessExecutor


def test_a_poll_waits_until_the_deadline_at_most():
    assert _poll_ms(check_exit=False, deadline=None) is None
    assert _poll_ms(check_exit=True, deadline=None) == EXIT_CHECK_MS
    assert _poll_ms(check_exit=False, deadline=time.monotonic() - 1) == 0
    assert 900 < _poll_ms(check_exit=False, deadline=time.monotonic() + 1) <= 1000
    assert _poll_ms(check_exit=True, deadline=time.monotonic() + 1) == EXIT_CHECK_MS
    assert _poll_ms(check_exit=False, deadline=time.monotonic() + 0.0001) == 1  # rounded up: no spinning


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "exit-checks"])
@pytest.mark.parametrize("script", ["sleep 30", "exec >&- 2>&-; sleep 30", "trap '' TERM; echo x; sleep 30"],
                         ids=["sleeps", "closed-streams", "ignores-sigterm"])
def test_a_program_past_its_limit_is_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool,
                                           script: str) -> None:
    if not pidfd:
        monkeypatch.setattr(output, "_open_pidfd", lambda pid: None)
    executor = ProcessExecutor(kill_grace_s=0.3, use_cgroups=False)
    request = ExecRequest(argv=["/bin/sh", "-c", script], env={}, work_dir=tmp_path, name="limit", timeout_s=0.3)
    began = time.monotonic()
    result = executor.run(request, lambda _container_id: None)
    elapsed = time.monotonic() - began
    executor.close()
    assert (result.exit_code, result.timed_out) == (TIMEOUT_EXIT_CODE, True), result
    assert 0.3 <= elapsed < 3, elapsed
    if "ignores" in script:
        assert elapsed >= 0.6 and result.stdout == b"x\n"  # SIGTERM ignored: SIGKILL after the grace period
