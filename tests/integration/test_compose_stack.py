"""compose/docker-compose.yml run for real with Debian's docker-compose (v1): the images built on this machine
(compose/build-images.sh: Kafka, PostgreSQL, Prometheus, the projector), the primes pipeline through the stack's
Kafka with agents on the host and the projection made by the stack's projector, and the data kept across
`down` and `up`. Grafana (pulled from a registry only) stays out: it runs only with the compose profile `grafana`.

Without docker-compose the test is skipped, except under CI (`CI=true`), where it fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cluster import Cluster
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from pipeline import REPO, free_port, list_tasks
from test_primes import EXPECTED

from scalebox_stream.kafka.config import admin_config, consumer_config
from scalebox_stream.kafka.topics import EVENTS_TOPIC
from scalebox_stream.launch.state_owner import start_state_owner

COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
SERVICES = ["kafka", "postgres", "projector", "prometheus"]  # every service but Grafana (profile `grafana`)
PRIMES_APP = REPO / "examples" / "primes" / "app-process.yaml"


@dataclass
class Stack:
    """One compose project of the test: its name, its environment (ports, password) and where to reach it."""

    project: str
    env: dict[str, str]
    kafka: str
    pg: str
    prometheus: str

    def compose(self, *args: str, timeout: float = 300) -> str:
        """Run `docker-compose -f compose/docker-compose.yml -p PROJECT ARGS`; its output (fails on error)."""
        proc = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "-p", self.project, *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env)
        assert proc.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def up(self) -> float:
        """Start the stack and wait until Kafka and PostgreSQL answer from the host; the seconds it took."""
        started = time.monotonic()
        self.compose("up", "-d", *SERVICES)
        _wait(lambda: _pg_answers(self.pg), 120, "the stack's PostgreSQL")
        _wait(lambda: _kafka_answers(self.kafka), 120, "the stack's Kafka")
        return time.monotonic() - started

    def logs(self) -> str:
        """The last lines of every service's log (for failure messages)."""
        proc = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "-p", self.project, "logs", "--no-color",
                               "--tail", "30"], capture_output=True, text=True, timeout=60, env=self.env)
        return proc.stdout[-8000:]


def _wait(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer within {timeout_s}s")
        time.sleep(0.5)


def _pg_answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def _kafka_answers(bootstrap: str) -> bool:
    try:
        return bool(AdminClient(admin_config(bootstrap)).list_topics(timeout=3).brokers)
    except Exception:
        return False


def _events_kept(bootstrap: str) -> tuple[int, int]:
    """(first offset summed over the events topic's partitions, records it holds): (0, n) while none expired."""
    from confluent_kafka import Consumer

    consumer = Consumer(consumer_config(bootstrap, f"sbx.test.compose-{uuid.uuid4().hex[:8]}"))
    try:
        partitions = consumer.list_topics(EVENTS_TOPIC, timeout=30).topics[EVENTS_TOPIC].partitions
        marks = [consumer.get_watermark_offsets(TopicPartition(EVENTS_TOPIC, p), timeout=30) for p in partitions]
    finally:
        consumer.close()
    return sum(low for low, _ in marks), sum(high - low for low, high in marks)


def _projector_up(prometheus: str) -> list[dict]:
    """Prometheus' answer to `up{job="scalebox-projectors"}`."""
    query = urllib.parse.urlencode({"query": 'up{job="scalebox-projectors"}'})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query?{query}", timeout=5) as response:
        return json.load(response)["data"]["result"]


def _run_primes(stack: Stack, n: int, log_dir: Path) -> dict[str, tuple[int, int]]:
    """The primes example up to `n`: agents on this host on the stack's Kafka, the projection made by the stack's
    projector alone; (succeeded, failed) per module once every task is terminal."""
    cluster = Cluster(PRIMES_APP, stack.kafka, stack.pg, log_dir)
    try:
        start_state_owner(cluster.children)  # the router sums the calc tasks' counts in a semaphore
        cluster.start_agent("router")
        cluster.start_agent("calc", 2)
        state = cluster.wait(cluster.send("router", [str(n)]), timeout_s=180)
    finally:
        cluster.close()
    return {m["module"]: (m["succeeded"], m["failed"]) for m in state.modules}


def _primes_tasks(stack: Stack) -> dict[str, tuple[str, int]]:
    """calc's tasks in the stack's projection: body -> (status, primes counted)."""
    tasks = list_tasks(stack.kafka, stack.pg, "primes", "calc")
    return {t["body"]: (t["status"], int(t["custom_out"] or -1)) for t in tasks}


@pytest.fixture(scope="module")
def compose_images(docker_available: None) -> float:
    """The stack's images, built (or found up to date) by compose/build-images.sh; the seconds it took."""
    if shutil.which("docker-compose") is None:
        message = "docker-compose not found (.ci/install-compose.sh installs Debian's)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    started = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "compose" / "build-images.sh")], capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, f"compose/build-images.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return time.monotonic() - started


@pytest.fixture
def stack(compose_images: float, docker_client) -> Iterator[Stack]:
    """A compose project of its own on free ports; removed afterwards with its volumes and network (the images
    stay, cached)."""
    project = f"sbxtest{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("KAFKA", "PG", "PROMETHEUS")}
    password = uuid.uuid4().hex
    env = {**os.environ, "SCALEBOX_PG_PASSWORD": password, "SCALEBOX_BIND": "127.0.0.1",
           "SCALEBOX_KAFKA_HOST": "127.0.0.1", **{f"SCALEBOX_{k}_PORT": str(v) for k, v in ports.items()}}
    for name in ("SCALEBOX_KAFKA", "SCALEBOX_PG", "SCALEBOX_PG_USER", "SCALEBOX_PG_DATABASE", "SCALEBOX_IMAGE"):
        env.pop(name, None)
    s = Stack(project, env, f"127.0.0.1:{ports['KAFKA']}",
              f"postgresql://scalebox:{password}@127.0.0.1:{ports['PG']}/scalebox",
              f"http://127.0.0.1:{ports['PROMETHEUS']}")
    try:
        yield s
    finally:
        s.compose("down", "-v", "--remove-orphans", "-t", "30")
        label = {"label": f"com.docker.compose.project={project}"}
        assert not docker_client.containers.list(all=True, filters=label)
        assert not docker_client.volumes.list(filters=label)
        assert not docker_client.networks.list(filters=label)


def test_the_stack_runs_a_pipeline_and_keeps_its_data_across_down_and_up(stack: Stack, compose_images: float,
                                                                          tmp_path: Path):
    timings = {"build": compose_images}
    try:
        timings["up"] = stack.up()
        started = time.monotonic()
        assert _run_primes(stack, 1000, tmp_path / "logs-1") == {"router": (11, 0), "calc": (10, 0)}
        timings["pipeline"] = time.monotonic() - started
        projected = _primes_tasks(stack)
        assert projected == {body: ("succeeded", n) for body, n in EXPECTED.items()}
        assert sum(n for _, n in projected.values()) == 168
        first_offset, events = _events_kept(stack.kafka)
        assert first_offset == 0 and events > 0

        # down (containers and network go, the volumes stay) and up again: the tasks and the events are there.
        started = time.monotonic()
        stack.compose("down", "-t", "60")
        timings["down"] = time.monotonic() - started
        assert stack.compose("ps", "-q").strip() == "", "containers left after down"
        timings["up again"] = stack.up()
        assert _primes_tasks(stack) == projected
        assert _events_kept(stack.kafka) == (0, events)
        with psycopg.connect(stack.pg) as conn:
            (tasks,) = conn.execute("SELECT count(*) FROM tasks WHERE app = 'primes'").fetchone()
        assert tasks == 21  # the start task, ten calc tasks and the ten counts they send back to the router

        # The restarted stack runs the next pipeline (primes up to 100 in ten ranges) next to the kept one.
        assert _run_primes(stack, 100, tmp_path / "logs-2") == {"router": (11, 0), "calc": (10, 0)}
        after = _primes_tasks(stack)
        assert {body: after[body] for body in projected} == projected
        assert sum(n for status, n in after.values() if status == "succeeded") == 168 + 25
        assert len(after) == 20

        # Prometheus (the stack's, after its restart) scrapes the restarted projector.
        deadline = time.monotonic() + 90
        while (up := _projector_up(stack.prometheus)) == [] or up[0]["value"][1] != "1":
            assert time.monotonic() < deadline, f"Prometheus: up of the projector is {up}"
            time.sleep(1)
    except BaseException:
        print(stack.logs())
        raise
    finally:
        print("compose stack timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
