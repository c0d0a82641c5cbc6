"""A single-node Kafka of a test's own (plaintext, free ports, its own data directory, the local broker's jars):
for tests that stop, restart or replace a broker. The shared local broker other test sessions use is never
touched."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka.admin import AdminClient
from pipeline import free_port
from secure_kafka import LOG4J2  # the same file-only broker log

from scalebox_stream.local import kafka


class PrivateKafka:
    """A broker under `root`: `start` formats its storage on first use (a new cluster id) and waits until it
    answers; `stop` ends it (SIGTERM: a controlled shutdown; `kill`: SIGKILL); `start` again restarts it on the
    same data. `wipe` removes the data, so the next start is a new cluster on the same port."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port, self.controller_port = port or free_port(), free_port()
        self.process: subprocess.Popen | None = None
        self.java = kafka.check_prerequisites(need_mvn=not kafka.jars_complete())
        self.lib = kafka.ensure_jars()
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "server.properties"
        self.config.write_text(kafka.render_properties(self.port, self.controller_port, root / "data", {
            "num.io.threads": 2, "num.recovery.threads.per.data.dir": 2}))
        (root / "log4j2.properties").write_text(LOG4J2.format(log=root / "server.log"))

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _jvm(self) -> list[str]:
        return [self.java, "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}", "-cp", str(self.lib / "*")]

    def start(self, timeout_s: float = 120.0) -> PrivateKafka:
        if not (self.root / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.UUID(int=uuid.uuid4().int & ~(1 << 127)).bytes).decode()
            fmt = subprocess.run([*self._jvm(), "kafka.tools.StorageTool", "format", "--standalone", "-t",
                                  cluster_id.rstrip("="), "-c", str(self.config)], capture_output=True, text=True,
                                 cwd=self.root)
            assert fmt.returncode == 0, fmt.stdout + fmt.stderr
        with (self.root / "kafka.out").open("ab") as out:
            self.process = subprocess.Popen([*self._jvm(), "kafka.Kafka", str(self.config)], stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT, cwd=self.root,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, f"the private broker exited:\n{self.tail()}"
            try:
                if AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0}).list_topics(timeout=2).brokers:
                    return self
            except Exception:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"the private broker did not answer within {timeout_s:g}s:\n{self.tail()}")
            time.sleep(0.2)

    def stop(self, grace_s: float = 30.0) -> None:
        """A controlled shutdown (SIGKILL after `grace_s`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def wipe(self) -> None:
        """Remove the data (stopped first): the next start formats a new cluster."""
        self.stop()
        shutil.rmtree(self.root / "data", ignore_errors=True)

    def tail(self, lines: int = 40) -> str:
        text = ""
        for name in ("kafka.out", "server.log"):
            path = self.root / name
            if path.exists():
                text += f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text


@contextmanager
def running(root: Path) -> Iterator[PrivateKafka]:
    """A private broker started under `root` for the `with` block, killed after it."""
    kafka = PrivateKafka(root).start()
    try:
        yield kafka
    finally:
        kafka.kill()
