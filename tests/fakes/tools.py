"""An in-memory stand-in for the shared-state handler the in-task tools talk to (unit tests only)."""

from __future__ import annotations

import threading

from scalebox_stream.agent.tools import ERROR, NOT_FOUND, OK, Caller


class FakeStateHandler:
    """Semaphores and variables of one process, with Scalebox's codes; records every call."""

    def __init__(self, semaphores: dict[str, int] | None = None, delay_s: float = 0.0) -> None:
        self.semaphores = dict(semaphores or {})
        self.variables: dict[str, str] = {}
        self.finished: list[tuple[str, str]] = []
        self.calls: list[tuple[str, list[str], Caller]] = []
        self.delay = threading.Event()
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def handle(self, op: str, args: list[str], caller: Caller) -> tuple[int, str]:
        if self.delay_s:
            self.delay.wait(self.delay_s)
        with self._lock:
            self.calls.append((op, args, caller))
            auto = caller.env.get("SEMAPHORE_AUTO_CREATE") == "yes"
            if op in ("semaphore get", "semaphore increment", "semaphore decrement", "semaphore increment-n"):
                name = args[0]
                if name not in self.semaphores and not auto:
                    return NOT_FOUND, f"semaphore {name} not found"
                step = {"semaphore get": 0, "semaphore increment": 1, "semaphore decrement": -1}.get(op)
                self.semaphores[name] = self.semaphores.get(name, 0) + (int(args[1]) if step is None else step)
                return OK, str(self.semaphores[name])
            if op == "semaphore create" and len(args) == 2:
                self.semaphores[args[0]] = int(args[1])
                return OK, ""
            if op == "semaphore create":
                return OK, ""
            if op == "variable set":
                self.variables[args[0]] = args[1]
                return OK, ""
            if op == "variable get":
                return (OK, self.variables[args[0]]) if args[0] in self.variables else (NOT_FOUND, "not found")
            if op == "app set-finished":
                self.finished.append((caller.app, args[0] if args else ""))
                return OK, ""
            return ERROR, f"unknown operation {op}"
