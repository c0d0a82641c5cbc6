"""A hand-driven deployment for fault tests: agents and a projector started, stopped and killed one by one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from scalebox_stream.events import EventCodec
from scalebox_stream.kafka.config import producer_config
from scalebox_stream.kafka.task_publisher import flush_or_fail, publish_task
from scalebox_stream.launch.children import Child, Children
from scalebox_stream.launch.deploy import deploy
from scalebox_stream.launch.progress import RunState
from scalebox_stream.launch.run import local_reaper
from scalebox_stream.projector import queries
from scalebox_stream.spec import load_app

KILLABLE = ("--consumer-config", "session.timeout.ms=6000")
"""Agent options for a group whose members a test SIGKILLs: the group hands a killed member's partitions on after
6 s (the broker's least session), not the agent's 10 s."""


class Cluster:
    """One app deployed on the test services, with agents under the test's control."""

    def __init__(self, app_file: Path, kafka: str, pg: str, log_dir: Path) -> None:
        self.app_file, self.kafka, self.pg = app_file, kafka, pg
        self.spec = load_app(app_file)
        deploy(self.spec, (), kafka, pg)
        self.children = Children(log_dir, {"SCALEBOX_KAFKA": kafka, "SCALEBOX_PG": pg})
        self.producer, self.codec = Producer(producer_config(kafka, log_level=2)), EventCodec()
        self.reaper = local_reaper(kafka)  # as `scalebox run` does on the local broker
        self._count = 0

    @classmethod
    def one_module(cls, tmp_path: Path, kafka: str, pg: str, prefix: str, module: str, command: str) -> Cluster:
        """An app `<prefix>-<random>` of one module running `command` (YAML), deployed; logs in tmp_path/logs."""
        app = tmp_path / "app.yaml"
        app.write_text(f"name: {prefix}-{uuid.uuid4().hex[:8]}\nmodules:\n  {module}:\n    command: {command}\n")
        return cls(app, kafka, pg, tmp_path / "logs")

    def start_agent(self, module: str, slots: int = 1, *extra: str) -> Child:
        """Start one agent of `module`."""
        self._count += 1
        return self.children.start(f"agent-{module}-{self._count}", [
            "agent", "--app", self.spec.name, "--module", module, "--app-file", str(self.app_file),
            "--slots", str(slots), *extra])

    def start_projector(self, *extra: str) -> Child:
        """Start a projector."""
        self._count += 1
        return self.children.start(f"projector-{self._count}", ["projector", *extra])

    def send(self, module: str, bodies: list[str]) -> list[str]:
        """Send tasks; returns their ids."""
        ids = [publish_task(self.producer, self.codec, self.spec.name, module, b) for b in bodies]
        flush_or_fail(self.producer)
        return ids

    def state(self, roots: list[str]) -> RunState:
        """Progress of the tasks descending from `roots`."""
        with psycopg.connect(self.pg, autocommit=True) as conn:
            return RunState(*queries.run_progress(conn, roots))

    def wait(self, roots: list[str], timeout_s: float) -> RunState:
        """Wait until every task descending from `roots` is terminal."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state(roots)
            if state.finished:
                return state
            time.sleep(0.3)
        raise TimeoutError(f"not finished in {timeout_s}s: {self.state(roots)}")

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Rows of a query on the projection."""
        with psycopg.connect(self.pg, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def wait_for(self, sql: str, *params: object, timeout_s: float = 60.0) -> list[tuple]:
        """Poll a query until it returns rows."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = self.query(sql, *params)
            if rows:
                return rows
            time.sleep(0.1)
        raise TimeoutError(f"no rows for {sql!r} within {timeout_s}s")

    def wait_for_members(self, module: str, count: int, timeout_s: float = 60.0) -> None:
        """Wait until `count` agents of `module` hold partitions (the group is stable)."""
        from confluent_kafka.admin import AdminClient

        from scalebox_stream.kafka.config import admin_config
        from scalebox_stream.kafka.topics import module_group

        admin, group = AdminClient(admin_config(self.kafka)), module_group(self.spec.name, module)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
            if (str(description.state).endswith("STABLE")
                    and sum(1 for m in description.members if m.assignment.topic_partitions) >= count):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{count} agents of {module} did not join within {timeout_s}s")

    @staticmethod
    def kill(child: Child) -> None:
        """SIGKILL a child (no chance to clean up)."""
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()

    @staticmethod
    def terminate(child: Child, timeout_s: float = 60.0) -> int:
        """SIGTERM a child and wait for its exit code."""
        child.process.send_signal(signal.SIGTERM)
        try:
            return child.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(child.process.pid, signal.SIGKILL)
            raise

    def close(self) -> None:
        """Stop every child."""
        self.children.stop(grace_s=10)
        if self.reaper is not None:
            self.reaper.stop()


def agent_pid(agent_id: str) -> int:
    """The pid inside an agent id (`host-pid-suffix`)."""
    return int(agent_id.rsplit("-", 2)[-2])
