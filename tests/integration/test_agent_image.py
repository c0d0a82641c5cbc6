"""The scalebox-stream image (agents/Dockerfile): an agent and a projector run from it, on the host's network,
project a real run, and stop cleanly on SIGTERM (as PID 1 of their containers)."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from cluster import Cluster
from pipeline import FAILS_ON_BAD, free_port

from scalebox_stream.kafka.security import forwarded_env, forwarded_files


def _passfile(dsn: str) -> list[Path]:
    """The libpq password file a DSN names (the secure local PostgreSQL's), if any."""
    return [Path(v) for k, v in parse_qsl(urlsplit(dsn).query) if k == "passfile"]


@pytest.fixture
def containers(docker_client):
    """Containers started by the test, stopped and removed after it."""
    started = []
    yield started
    for container in started:
        container.remove(force=True)


def test_agent_and_projector_run_from_the_image(tmp_path, kafka_bootstrap, pg_dsn, docker_client, agent_image,
                                                containers):
    c = Cluster.one_module(tmp_path, kafka_bootstrap, pg_dsn, "image", "work", FAILS_ON_BAD)
    app = c.spec.name
    port = free_port()
    env = {**forwarded_env(kafka_bootstrap), "SCALEBOX_KAFKA": kafka_bootstrap, "SCALEBOX_PG": pg_dsn}
    credentials = {str(path): {"bind": str(path), "mode": "ro"}  # the Kafka login and PostgreSQL's passfile
                   for path in [*forwarded_files(kafka_bootstrap), *_passfile(pg_dsn)]}
    common = {"network_mode": "host", "environment": env, "detach": True}
    try:
        containers.append(docker_client.containers.run(agent_image, ["projector"], name=f"sbx-projector-{app}",
                                                       volumes=credentials, **common))
        agent = docker_client.containers.run(
            agent_image, ["agent", "--app", app, "--module", "work", "--app-file", "/apps/app.yaml", "--slots", "2",
                          "--host", "image-host", "--metrics-port", str(port)],
            name=f"sbx-agent-{app}", volumes={str(c.app_file): {"bind": "/apps/app.yaml", "mode": "ro"}, **credentials},
            **common)
        containers.append(agent)
        state = c.wait(c.send("work", [f"ok{i}" for i in range(4)] + ["bad1"]), timeout_s=120)
        (module,) = state.modules
        assert (module["succeeded"], module["failed"]) == (4, 1), module
        runs = c.query("SELECT DISTINCT host, executor, agent LIKE %s FROM task_runs WHERE app = %s",
                       f"{agent.attrs['Config']['Hostname']}-%", app)
        assert runs == [("image-host", "process", True)], runs
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert f'scalebox_agent_attempts_finished_total{{app="{app}",cluster="local",host="image-host",' \
               f'module="work",outcome="succeeded"}} 4.0' in metrics

        for container in containers:
            container.stop(timeout=30)
            assert container.wait(timeout=60)["StatusCode"] == 0, container.logs(tail=30).decode()
    finally:
        c.close()


def test_image_without_arguments_prints_the_cli_help(docker_client, agent_image):
    out = docker_client.containers.run(agent_image, remove=True, network_mode="none").decode()
    assert "agent" in out and "projector" in out, out
