"""The agent's side of the in-task tools: answers the requests a task's `scalebox` command sends.

Each agent slot has a channel directory (mounted into its containers; a host path for the process executor)
holding one FIFO, `requests`, that the agent keeps open for reading. A tool asks by writing its request to
`<id>.req` (NUL-separated fields, any size up to a cap), making the FIFO `<id>.rep`, and writing the line
`<id>` to `requests`; the agent reads the request, answers `<code>\\n<text>` into `<id>.rep` and the tool
prints the text and exits with the code (Scalebox's: 0 ok, 1 error, 2 not found).

Nothing here can block the agent: one selector thread reads every channel without blocking, requests are
answered by a small pool of workers, and every wait on a task (its reply FIFO being opened, read) has a
deadline. A request that is garbage, too large, names no waiting reply FIFO or arrives outside an attempt
gets an error or is dropped; the attempt goes on. The task never reaches Kafka or PostgreSQL: requests
that need shared state go to a `ToolHandler` (the state client), which the agent owns.

Tasks a tool adds (`scalebox task add`, `send-message`) never come here: they are lines of the attempt's
`sink-tasks.jsonl`, sent with its report (agent/sink.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import selectors
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from scalebox_stream.agent.workfiles import read_work_file

log = logging.getLogger(__name__)

OK, ERROR, NOT_FOUND = 0, 1, 2
"""Scalebox's return codes."""
REQUESTS_FIFO = "requests"
REQUEST_VERSION = "sbx1"
MAX_REQUEST_BYTES = 1 << 20
"""Bytes of one request file (a variable's value, an app's result text)."""
MAX_REPLY_BYTES = 1 << 20
"""Bytes of one answer's text; a longer one is cut."""
MAX_LINE_BYTES = 64
"""Bytes of one line on the requests FIFO (a request id); longer lines are dropped."""
MAX_PENDING = 32
"""Requests of one channel waiting for a worker; more are dropped (their tools time out)."""
REPLY_OPEN_S = 5.0
"""How long the agent waits for a tool to open its reply FIFO."""
REPLY_WRITE_S = 10.0
"""How long the agent waits for a tool to read its answer."""
VALID_ID = re.compile(rb"[0-9]{1,10}")
GROUPS = ("task", "semaphore", "semagroup", "variable", "global", "app")
"""The command groups a request may name (the first word of `scalebox ...`)."""


@dataclass(frozen=True)
class Caller:
    """The attempt a request comes from, and what the tool passed along of its environment."""

    app: str
    module: str
    task_id: str
    attempt: int
    headers: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    """SEMAPHORE_AUTO_CREATE and APP_ID as the tool saw them."""
    overlay: dict[str, str | None] = field(default_factory=dict)
    """Headers set (or removed: None) by `task set-header` / `remove-header` during the attempt."""


class ToolHandler(Protocol):
    """Answers the requests that need shared state (semaphores, variables, globals, the app's result).

    `op` is the two command words (`"semaphore increment-n"`, `"app set-finished"`), `args` the rest of the
    tool's arguments as typed. Returns Scalebox's code and the text the tool prints (on stdout for 0, on
    stderr otherwise). Called from a worker thread; it should have its own timeouts."""

    def handle(self, op: str, args: list[str], caller: Caller) -> tuple[int, str]: ...


class UnavailableHandler:
    """The handler of an agent that has no shared state to offer."""

    def handle(self, op: str, args: list[str], caller: Caller) -> tuple[int, str]:
        return ERROR, f"scalebox {op}: shared state is not available to this agent"


def parse_request(data: bytes) -> tuple[str, int, dict[str, str], list[str]]:
    """(task id, attempt, environment, argv) of a request file; raises ValueError for anything else.

    Fields are NUL-terminated: the version, TASK_ID, ATTEMPT, `KEY=VALUE` pairs, `--`, then the argv."""
    if not data.endswith(b"\0"):
        raise ValueError("a request ends with a NUL byte")
    fields = [f.decode("utf-8", errors="surrogateescape") for f in data[:-1].split(b"\0")]
    if len(fields) < 4 or fields[0] != REQUEST_VERSION:
        raise ValueError("not a request of this agent's tools")
    try:
        end = fields.index("--", 3)
        attempt = int(fields[2])
    except ValueError:
        raise ValueError("a request names its attempt and ends its environment with --") from None
    env = dict(f.partition("=")[::2] for f in fields[3:end])
    return fields[1], attempt, env, fields[end + 1:]


def _strip_id_options(args: list[str]) -> list[str]:
    """`args` without Scalebox's scope options (`--app-id X`, `--module-id=X`, `--job-id X`): a task's own."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--app-id", "--module-id", "--job-id"):
            skip = True
        elif not arg.startswith(("--app-id=", "--module-id=", "--job-id=")):
            out.append(arg)
    return out


def _header_command(word: str, args: list[str], caller: Caller) -> tuple[int, str]:
    """`task get-header|set-header|remove-header [--task-id ID] NAME [VALUE]`, on the current task's headers."""
    rest, task_id = [], caller.task_id
    it = iter(args)
    for arg in it:
        if arg == "--task-id":
            task_id = next(it, "")
        elif arg.startswith("--task-id="):
            task_id = arg.partition("=")[2]
        else:
            rest.append(arg)
    if task_id != caller.task_id:
        return ERROR, f"scalebox task {word}: inside a task only its own headers can be read or changed"
    wanted = {"get-header": 1, "set-header": 2, "remove-header": 1}[word]
    if len(rest) != wanted:
        return ERROR, f"scalebox task {word}: expected {wanted} argument(s), got {len(rest)}"
    name = rest[0]
    current = caller.overlay[name] if name in caller.overlay else caller.headers.get(name)
    if word == "get-header":
        return (OK, current) if current is not None else (NOT_FOUND, f"{name} not-exists")
    if word == "set-header":
        caller.overlay[name] = rest[1]
        return OK, ""
    if current is None:
        return NOT_FOUND, f"{name} not-exists"
    caller.overlay[name] = None
    return OK, ""


def answer(argv: list[str], caller: Caller, handler: ToolHandler) -> tuple[int, str]:
    """The code and text for one tool request (`argv` = the arguments of `scalebox`)."""
    if len(argv) < 2 or argv[0] not in GROUPS:
        return ERROR, f"scalebox {' '.join(argv[:2])}: not a command inside a task (groups: {', '.join(GROUPS)})"
    group, word, args = argv[0], argv[1], argv[2:]
    if group == "task":
        if word in ("get-header", "set-header", "remove-header"):
            return _header_command(word, args, caller)
        return ERROR, f"scalebox task {word}: not a command inside a task"
    if group == "app":
        args = _strip_id_options(args)
        if word == "set-status" and args[:1] == ["FINISHED"]:
            word, args = "set-finished", args[1:]
        if word != "set-finished" or len(args) > 1:
            return ERROR, "usage inside a task: scalebox app set-finished [TEXT]"
    return handler.handle(f"{group} {word}", args, caller)


def reply_bytes(code: int, text: str) -> bytes:
    """The reply a tool reads: the code on the first line, then the text (a newline ended, capped)."""
    body = text.encode("utf-8", errors="surrogateescape")
    if len(body) > MAX_REPLY_BYTES:
        body = body[:MAX_REPLY_BYTES]
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return b"%d\n" % code + body


class ToolChannel:
    """One slot's channel: its directory, its `requests` FIFO, and the attempt it now serves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        fifo = path / REQUESTS_FIFO
        with contextlib.suppress(FileNotFoundError):
            fifo.unlink()
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # the task's user writes its lines; umask aside
        self.read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # our own writer: the FIFO never reads as closed (no busy EOF) when tools come and go
        self._keep_fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._buffer = b""
        self._skipping = False
        self._lock = threading.Lock()
        self._caller: Caller | None = None
        self._pending = 0
        self._used = False
        """Whether anything came on the FIFO since the last cleanup (a task that uses no tool costs no listing)."""

    def take(self) -> bool:
        """Count one more request waiting for a worker; False when MAX_PENDING already wait."""
        with self._lock:
            if self._pending >= MAX_PENDING:
                return False
            self._pending += 1
            return True

    def release(self) -> None:
        """One request less waiting."""
        with self._lock:
            self._pending -= 1

    @property
    def caller(self) -> Caller | None:
        """The attempt now running in the slot (None between attempts)."""
        with self._lock:
            return self._caller

    def begin(self, caller: Caller) -> None:
        """Serve `caller`'s attempt from now on."""
        with self._lock:
            self._caller = caller

    def end(self) -> None:
        """The attempt is over: later requests are refused; leftovers of tools are removed if any was used."""
        with self._lock:
            self._caller = None
            used, self._used = self._used, False
        if not used:
            return
        try:
            names = os.listdir(self.path)
        except OSError:
            return
        for name in names:
            if name != REQUESTS_FIFO:
                with contextlib.suppress(OSError):
                    os.unlink(self.path / name)

    def feed(self, data: bytes) -> list[bytes]:
        """The complete request ids in `data` (read from the FIFO); an overlong or malformed line is dropped."""
        ids = []
        self._used = True
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if self._skipping:
                self._skipping = False
                continue
            if VALID_ID.fullmatch(line):
                ids.append(line)
            elif line:
                log.warning("tool channel %s: dropped a malformed request line", self.path)
        if len(self._buffer) > MAX_LINE_BYTES:
            log.warning("tool channel %s: dropped an overlong request line", self.path)
            self._buffer, self._skipping = b"", True
        return ids

    def close(self) -> None:
        for fd in (self.read_fd, self._keep_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class ToolServer:
    """Serves every channel of an agent: one selector thread, a few workers; started by the first channel."""

    def __init__(self, handler: ToolHandler | None = None, workers: int = 4, reply_open_s: float = REPLY_OPEN_S,
                 reply_write_s: float = REPLY_WRITE_S) -> None:
        self.handler: ToolHandler = handler or UnavailableHandler()
        self.workers = workers
        self.reply_open_s = reply_open_s
        self.reply_write_s = reply_write_s
        self._channels: dict[str, ToolChannel] = {}
        self._lock = threading.Lock()
        self._selector: selectors.BaseSelector | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._closed = False

    def channel(self, key: str, path: Path) -> ToolChannel:
        """The channel `key` (a slot), made in `path` the first time it is asked for."""
        channel = self._channels.get(key)
        if channel is not None:
            return channel
        with self._lock:
            if self._closed:
                raise RuntimeError("the tool server is closed")
            channel = self._channels.get(key)
            if channel is None:
                self._start()
                channel = ToolChannel(path)
                assert self._selector is not None
                self._selector.register(channel.read_fd, selectors.EVENT_READ, channel)
                self._channels[key] = channel
                os.write(self._wake_w, b"x")
            return channel

    def _start(self) -> None:
        if self._thread is not None:
            return
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sbx-tools")
        self._thread = threading.Thread(target=self._loop, name="sbx-tools", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving; channels are closed (their directories stay, the agent removes them)."""
        with self._lock:
            self._closed = True
            thread, pool = self._thread, self._pool
            if thread is not None:
                os.write(self._wake_w, b"x")
        if thread is not None:
            thread.join(timeout=5)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for channel in list(self._channels.values()):
            channel.close()
        self._channels.clear()
        if self._selector is not None:
            self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    def _loop(self) -> None:
        assert self._selector is not None
        while not self._closed:
            for key, _ in self._selector.select(timeout=1.0):
                channel = key.data
                if channel is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                try:
                    data = os.read(channel.read_fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    log.exception("tool channel %s cannot be read", channel.path)
                    continue
                for request_id in channel.feed(data):
                    self._submit(channel, request_id.decode())

    def _submit(self, channel: ToolChannel, request_id: str) -> None:
        if not channel.take():
            log.warning("tool channel %s: too many requests waiting; request %s dropped", channel.path, request_id)
            return
        assert self._pool is not None
        try:
            self._pool.submit(self._serve, channel, request_id)
        except RuntimeError:  # shut down meanwhile
            channel.release()

    def _serve(self, channel: ToolChannel, request_id: str) -> None:
        try:
            dir_fd = os.open(channel.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            channel.release()
            return
        try:
            code, text = self._answer(channel, dir_fd, request_id)
            self._reply(dir_fd, f"{request_id}.rep", reply_bytes(code, text))
        except Exception:  # a handler's bug must not end the worker
            log.exception("tool request %s failed", request_id)
        finally:
            os.close(dir_fd)
            channel.release()

    def _answer(self, channel: ToolChannel, dir_fd: int, request_id: str) -> tuple[int, str]:
        name = f"{request_id}.req"
        read = read_work_file(dir_fd, name, MAX_REQUEST_BYTES, whole=True)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        if read.problem is not None:
            return ERROR, f"scalebox: request refused: {read.problem}"
        if read.data is None:
            return ERROR, (f"scalebox: request refused: it is {read.size} bytes, over {MAX_REQUEST_BYTES}"
                           if read.size else "scalebox: request refused: no request file")
        try:
            task_id, attempt, env, argv = parse_request(read.data)
        except ValueError as exc:
            return ERROR, f"scalebox: request refused: {exc}"
        caller = channel.caller
        if caller is None or (task_id, attempt) != (caller.task_id, caller.attempt):
            return ERROR, "scalebox: request refused: it does not come from the attempt now running"
        if env:
            caller = Caller(caller.app, caller.module, caller.task_id, caller.attempt, caller.headers,
                            {**caller.env, **env}, caller.overlay)
        try:
            code, text = answer(argv, caller, self.handler)
        except Exception as exc:
            log.exception("tool handler failed on %s", argv[:2])
            return ERROR, f"scalebox {' '.join(argv[:2])}: {type(exc).__name__}: {exc}"
        return (code if code in (OK, ERROR, NOT_FOUND) else ERROR), text

    def _reply(self, dir_fd: int, name: str, data: bytes) -> None:
        """Write `data` into the tool's reply FIFO `name`, giving up at the deadlines (the tool then fails)."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return
        if not stat.S_ISFIFO(info.st_mode):
            log.warning("tool reply %s is not a FIFO: no answer sent", name)
            return
        try:
            self._write_fifo(dir_fd, name, data)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)  # the tool has it open (or gave up): it need not remove it

    def _write_fifo(self, dir_fd: int, name: str, data: bytes) -> None:
        deadline = time.monotonic() + self.reply_open_s
        delay = 0.0002  # the tool opens it right after its request line: usually within a millisecond or two
        while True:
            try:
                fd = os.open(name, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO or time.monotonic() >= deadline:
                    return  # nobody reads it (the tool is gone), or it is not ours to open
            time.sleep(delay)
            delay = min(delay * 1.5, 0.02)
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return
            deadline = time.monotonic() + self.reply_write_s
            view = memoryview(data)
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                _, ready, _ = select.select([], [fd], [], left)
                if not ready:
                    return
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    return
        finally:
            os.close(fd)
