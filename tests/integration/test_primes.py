"""The primes example end to end on real Kafka, PostgreSQL and (for the container variants) Docker or Podman."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pipeline import REPO, list_tasks, scalebox, utc_now

EXPECTED = {
    "000000001_000000100": 25, "000000101_000000200": 21, "000000201_000000300": 16, "000000301_000000400": 16,
    "000000401_000000500": 17, "000000501_000000600": 14, "000000601_000000700": 16, "000000701_000000800": 14,
    "000000801_000000900": 15, "000000901_000001000": 14,
}


def _run_primes(app_file: str, kafka: str, pg: str) -> list[dict]:
    since = utc_now()
    result = scalebox(["run", app_file, "1000"], kafka, pg)
    assert result.code == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stderr.splitlines()[-1:] == ["result: 168"], "the run prints the app's result: the router's sum"
    calc = [t for t in list_tasks(kafka, pg, "primes", "calc", since) if t["body"] in EXPECTED]
    return calc


def _check(calc: list[dict]) -> None:
    assert len(calc) == 10
    assert all(t["status"] == "succeeded" and t["exit_code"] == 0 and t["attempts"] == 1 for t in calc)
    assert {t["body"]: int(t["custom_out"]) for t in calc} == EXPECTED
    assert sum(int(t["custom_out"]) for t in calc) == 168


def test_primes_with_the_process_executor(kafka_bootstrap, pg_dsn):
    _check(_run_primes(str(REPO / "examples/primes/app-process.yaml"), kafka_bootstrap, pg_dsn))


def test_the_main_router_splits_and_sums_into_a_semaphore(kafka_bootstrap, pg_dsn):
    """As Scalebox's app-primes: the main router splits [1..N], each calc task sends its count back to it
    (`scalebox task add -H part_primes=COUNT`), the router adds it to the semaphore `app-primes:sum_value`
    (`scalebox semaphore increment-n`) and the last one finishes the app with the sum, which `scalebox run`
    prints and `scalebox semaphore get --app primes` shows afterwards."""
    since = utc_now()
    result = scalebox(["run", str(REPO / "examples/primes/app-process.yaml"), "100000"], kafka_bootstrap, pg_dsn)
    assert result.code == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stderr.splitlines()[-1:] == ["result: 9592"]
    ranges = [f"{i * 10000 + 1:09d}_{(i + 1) * 10000:09d}" for i in range(10)]
    router = [t for t in list_tasks(kafka_bootstrap, pg_dsn, "primes", "router", since)
              if t["body"] in ("100000", *ranges)]
    assert len(router) == 11 and all(t["status"] == "succeeded" for t in router), router
    parts = [t for t in router if t["body"] != "100000"]
    assert sorted(t["body"] for t in parts) == ranges
    calc = {t["task_id"]: t for t in list_tasks(kafka_bootstrap, pg_dsn, "primes", "calc", since)
            if t["body"] in ranges}
    assert sorted(calc[t["parent_task_id"]]["body"] for t in parts) == ranges, "each part comes from its calc task"
    assert sum(int(t["custom_out"]) for t in calc.values()) == 9592
    got = scalebox(["semaphore", "get", "--app", "primes", "app-primes:sum_value"], kafka_bootstrap, pg_dsn)
    assert (got.code, got.stdout) == (0, "9592\n"), got.stderr
    done = scalebox(["semaphore", "get", "--app", "primes", "app-primes:groups_done"], kafka_bootstrap, pg_dsn)
    assert done.stdout == "10\n"


@pytest.mark.usefixtures("example_images")
def test_primes_with_the_docker_executor(kafka_bootstrap, pg_dsn, docker_client):
    before = {c.id for c in docker_client.containers.list(all=True, filters={"label": "scalebox.app=primes"})}
    _check(_run_primes(str(REPO / "examples/primes/app.yaml"), kafka_bootstrap, pg_dsn))
    after = {c.id for c in docker_client.containers.list(all=True, filters={"label": "scalebox.app=primes"})}
    assert after <= before, "the docker executor left containers behind"


def test_primes_with_the_podman_executor(kafka_bootstrap, pg_dsn, podman_client, podman_images, tmp_path: Path):
    """examples/primes/app.yaml with calc on `executor: podman` (a copy of the app file in tmp_path)."""
    app = yaml.safe_load((REPO / "examples/primes/app.yaml").read_text())
    app["modules"]["router"]["command"] = str(REPO / "examples/primes/router/run.sh")
    app["modules"]["calc"]["executor"] = "podman"
    (tmp_path / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))  # router stays the entry module
    before = {c.id for c in podman_client.containers.list(all=True, filters={"label": "scalebox.app=primes"})}
    calc = _run_primes(str(tmp_path / "app.yaml"), kafka_bootstrap, pg_dsn)
    _check(calc)
    shown = scalebox(["task", "show", calc[0]["task_id"], "--json"], kafka_bootstrap, pg_dsn)
    assert shown.code == 0, shown.stderr
    attempt = json.loads(shown.stdout)["attempts_detail"][0]
    assert attempt["executor"] == "podman" and attempt["container_id"], attempt
    after = {c.id for c in podman_client.containers.list(all=True, filters={"label": "scalebox.app=primes"})}
    assert after <= before, "the podman executor left containers behind"
