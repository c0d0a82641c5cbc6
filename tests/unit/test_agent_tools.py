"""The in-task tools' request channel: the real sh client (`scalebox`) against the agent's ToolServer through
real FIFOs, with a fake state handler; codes, garbage, stuck and hostile clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest
from fakes.tools import FakeStateHandler

from scalebox_stream.agent.tools import (
    ERROR,
    MAX_REQUEST_BYTES,
    NOT_FOUND,
    OK,
    Caller,
    ToolServer,
    answer,
    parse_request,
    reply_bytes,
)
from scalebox_stream.intask import BIN_DIR

SHELLS = [["/bin/sh"]] + ([["busybox", "sh"]] if shutil.which("busybox") else [])
CALLER = Caller("app1", "m", "t-1", 1, {"sema_name": "s1", "k": "v"})


@pytest.fixture
def served(tmp_path):
    handler = FakeStateHandler({"s1": 5})
    server = ToolServer(handler, reply_open_s=0.5, reply_write_s=0.5)
    channel = server.channel("0", tmp_path / "ch")
    channel.begin(CALLER)
    yield server, channel, handler
    server.close()


def _tool(channel, *args, shell=("/bin/sh",), env=None, timeout=20):
    full = {"PATH": os.environ["PATH"], "SBX_CHANNEL": str(channel.path), "TASK_ID": "t-1", "ATTEMPT": "1",
            **(env or {})}
    return subprocess.run([*shell, str(BIN_DIR / "scalebox"), *args], env=full, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_codes_and_output_follow_scalebox(served, shell):
    _, channel, handler = served
    got = _tool(channel, "semaphore", "get", "s1", shell=shell)
    assert (got.returncode, got.stdout, got.stderr) == (OK, "5\n", "")
    got = _tool(channel, "semaphore", "increment-n", "s1", "3", shell=shell)
    assert (got.returncode, got.stdout) == (OK, "8\n")
    got = _tool(channel, "semaphore", "get", "nope", shell=shell)
    assert (got.returncode, got.stdout) == (NOT_FOUND, "") and "not found" in got.stderr
    got = _tool(channel, "semaphore", "increment", "new", shell=shell, env={"SEMAPHORE_AUTO_CREATE": "yes"})
    assert (got.returncode, got.stdout) == (OK, "1\n")
    got = _tool(channel, "fs", "ls", shell=shell)
    assert got.returncode == ERROR and "not a command inside a task" in got.stderr
    got = _tool(channel, "variable", "set", "v", "two words\nand a line", shell=shell)
    assert got.returncode == OK and handler.variables == {"v": "two words\nand a line"}
    got = _tool(channel, "app", "set-finished", "--module-id=7", "Hello x, it is OK!", shell=shell)
    assert got.returncode == OK and handler.finished == [("app1", "Hello x, it is OK!")]
    assert [c.task_id for _, _, c in handler.calls] == ["t-1"] * len(handler.calls)


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_a_sema_file_is_read_by_the_tool_and_forwarded_as_arguments(served, shell, tmp_path):
    _, channel, handler = served
    sema = tmp_path / "my sema.txt"
    text = '"s1":1\n\n"$(touch pwned)`id`;x":2\n"a \\n b":3'
    sema.write_text(text + "\n")
    got = _tool(channel, "semaphore", "create", "--batch-size", "5", "--sema-file", str(sema), "--app-id=7",
                shell=shell)
    assert got.returncode == OK, got.stderr
    op, args, _ = handler.calls[-1]
    assert op == "semaphore create"
    assert args == ["--batch-size", "5", f"--sema-file-name={sema}", f"--sema-file-text={text}", "--app-id=7"]
    got = _tool(channel, "semaphore", "create", f"--sema-file={sema}", "--", "--sema-file", shell=shell)
    assert handler.calls[-1][1] == [f"--sema-file-name={sema}", f"--sema-file-text={text}", "--", "--sema-file"]
    calls = len(handler.calls)
    for args in (["--sema-file", str(tmp_path / "missing.txt")], ["--sema-file"]):
        got = _tool(channel, "semaphore", "create", *args, shell=shell)
        assert got.returncode == ERROR and ("sema file" in got.stderr or "needs a file" in got.stderr)
    assert len(handler.calls) == calls, "nothing reaches the agent"
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


def test_headers_of_the_current_task_are_answered_by_the_agent(served):
    _, channel, handler = served
    assert _tool(channel, "task", "get-header", "sema_name").stdout == "s1\n"
    got = _tool(channel, "task", "get-header", "missing")
    assert got.returncode == NOT_FOUND and "missing not-exists" in got.stderr
    assert _tool(channel, "task", "set-header", "k", "w").returncode == OK
    assert _tool(channel, "task", "get-header", "--task-id", "t-1", "k").stdout == "w\n"
    assert _tool(channel, "task", "get-header", "--task-id", "other", "k").returncode == ERROR
    assert handler.calls == []  # never reached the state handler


def test_a_request_from_another_attempt_or_between_attempts_is_refused(served):
    _, channel, handler = served
    got = _tool(channel, "semaphore", "get", "s1", env={"ATTEMPT": "2"})
    assert got.returncode == ERROR and "attempt now running" in got.stderr
    channel.end()
    got = _tool(channel, "semaphore", "get", "s1")
    assert got.returncode == ERROR and "attempt now running" in got.stderr
    assert handler.calls == []
    assert os.listdir(channel.path) == ["requests"]  # the tools cleaned up after themselves


def test_stuck_and_garbage_clients_do_not_block_the_agent(served):
    _, channel, _ = served
    fifo = channel.path / "requests"
    stuck = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # opens and never writes
    noisy = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    os.write(noisy, b"garbage line\n../../etc/passwd\n" + b"9" * 3000)  # no newline: an overlong line
    (channel.path / "77.req").write_bytes(b"sbx1\0t-1\0" + b"1\0--\0semaphore\0get\0s1\0")
    os.write(noisy, b"\n77\n")  # its reply FIFO was never made: nothing is answered, nothing waits
    (channel.path / "78.req").write_bytes(b"not a request")
    os.mkfifo(channel.path / "78.rep")
    os.write(noisy, b"78\n")
    reply = os.open(channel.path / "78.rep", os.O_RDONLY)  # blocks until the agent opens it
    with os.fdopen(reply, "rb") as r:
        assert r.read().startswith(b"1\nscalebox: request refused")
    began = time.monotonic()
    got = _tool(channel, "semaphore", "get", "s1")
    assert (got.returncode, got.stdout) == (OK, "5\n") and time.monotonic() - began < 5
    os.close(stuck)
    os.close(noisy)


def test_a_reply_fifo_nobody_reads_is_given_up_and_others_are_served(served):
    server, channel, _ = served
    for n in (11, 12, 13, 14, 15):  # more than the workers, each waits reply_open_s in vain
        (channel.path / f"{n}.req").write_bytes(b"sbx1\0t-1\0" + b"1\0--\0semaphore\0get\0s1\0")
        os.mkfifo(channel.path / f"{n}.rep")
    fd = os.open(channel.path / "requests", os.O_WRONLY)
    os.write(fd, b"11\n12\n13\n14\n15\n")
    os.close(fd)
    began = time.monotonic()
    got = _tool(channel, "semaphore", "get", "s1")
    assert got.returncode == OK and time.monotonic() - began < 2 * server.reply_open_s + 2


def test_hostile_request_and_reply_files_are_refused(served, tmp_path):
    _, channel, _ = served
    secret = tmp_path / "secret"
    secret.write_text("do not read")
    os.symlink(secret, channel.path / "21.req")  # a link to a host file: never followed
    os.mkfifo(channel.path / "21.rep")
    (channel.path / "22.req").write_bytes(b"x" * (MAX_REQUEST_BYTES + 1))
    os.mkfifo(channel.path / "22.rep")
    (channel.path / "23.req").write_bytes(b"sbx1\0t-1\0" + b"1\0--\0semaphore\0get\0s1\0")
    (channel.path / "23.rep").write_text("a regular file is not written to")
    fd = os.open(channel.path / "requests", os.O_WRONLY)
    os.write(fd, b"21\n22\n23\n")
    os.close(fd)
    for n, words in ((21, b"symbolic link"), (22, b"bytes, over")):
        with open(channel.path / f"{n}.rep", "rb") as r:
            text = r.read()
        assert text.startswith(b"1\n") and words in text, text
    time.sleep(0.3)
    assert (channel.path / "23.rep").read_text() == "a regular file is not written to"
    assert secret.read_text() == "do not read"


def test_the_tool_fails_cleanly_without_an_agent(tmp_path):
    got = subprocess.run(["/bin/sh", str(BIN_DIR / "scalebox"), "semaphore", "get", "x"], capture_output=True,
                         text=True, env={"PATH": os.environ["PATH"], "SBX_CHANNEL": str(tmp_path)}, timeout=20)
    assert got.returncode == 1 and "not inside a task" in got.stderr


def test_a_slow_handler_does_not_hold_the_reader(tmp_path):
    handler = FakeStateHandler({"s1": 1}, delay_s=1.0)
    server = ToolServer(handler, workers=2)
    channel = server.channel("0", tmp_path / "ch")
    channel.begin(CALLER)
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(_tool(channel, "semaphore", "get", "s1")))
                   for _ in range(2)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.returncode for r in results] == [OK, OK] and time.monotonic() - began < 1.9
    finally:
        server.close()


def test_request_parsing_and_replies():
    assert parse_request(b"sbx1\0t\0003\0A=1\0B=\0--\0semaphore\0get\0x\0") == (
        "t", 3, {"A": "1", "B": ""}, ["semaphore", "get", "x"])
    for bad in (b"sbx1\0t\0001\0--\0x", b"sbx9\0t\0001\0--\0", b"sbx1\0t\0one\0--\0", b"sbx1\0t\0001\0x\0"):
        with pytest.raises(ValueError):
            parse_request(bad)
    assert reply_bytes(0, "5") == b"0\n5\n" and reply_bytes(2, "") == b"2\n"
    assert answer(["app", "set-status", "FINISHED", "done"], CALLER, FakeStateHandler()) == (OK, "")
    assert answer(["app", "list"], CALLER, FakeStateHandler())[0] == ERROR
