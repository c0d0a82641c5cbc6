"""compose/'s Prometheus configuration, alert rules and Grafana dashboard, against real services.

A real Prometheus (Debian's) scrapes a real agent and projector through compose/prometheus/prometheus.yml, and
every PromQL query of compose/grafana/dashboards/scalebox.json is asked of it; every SQL query of the dashboard
runs on the real projection. Grafana itself is not run (no image registry here): what it would send is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml
from cluster import Cluster
from pipeline import FAILS_ON_BAD, REPO, free_port

COMPOSE = REPO / "compose"
DASHBOARD = COMPOSE / "grafana" / "dashboards" / "scalebox.json"
MAY_BE_EMPTY = ("scalebox_projector_dead_letters_total",)
"""Series that exist only once something happened (the projector's dead letters are labelled by reason)."""


@pytest.fixture(scope="module")
def prometheus_tools() -> tuple[str, str]:
    """Debian's prometheus and promtool (.ci/bootstrap installs them): missing is a failure under CI."""
    tools = shutil.which("prometheus"), shutil.which("promtool")
    if None in tools:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus and promtool are required under CI (.ci/bootstrap installs Debian's prometheus)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return tools  # type: ignore[return-value]


def local_config(tmp_path: Path, projector_port: int | None = None, agent_port: int | None = None) -> Path:
    """compose/prometheus copied to `tmp_path`, its /etc/prometheus paths pointed there, scraping every second
    the given local ports instead of the compose hosts; the config file's path."""
    root = tmp_path / "prometheus"
    shutil.copytree(COMPOSE / "prometheus", root)
    config_file = root / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text().replace("/etc/prometheus", str(root)))
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    config_file.write_text(yaml.safe_dump(config))
    for name, port in (("projectors", projector_port), ("agents", agent_port)):
        if port is not None:
            (root / "targets" / f"{name}.json").write_text(
                json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"cluster": "local"}}]))
    return config_file


def test_prometheus_config_and_alert_rules_pass_promtool(tmp_path, prometheus_tools):
    _, promtool = prometheus_tools
    config = local_config(tmp_path)
    checked = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "6 rules found" in checked.stdout
    tested = subprocess.run([promtool, "test", "rules", "scalebox_test.yml"], capture_output=True, text=True,
                            cwd=config.parent / "rules")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_targets(datasource: str) -> list[tuple[str, dict]]:
    """(panel title, target) of every query the dashboard sends to the data source of type `datasource`."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t) for p in panels for t in p.get("targets", []) if t["datasource"]["type"] == datasource]


def as_grafana_sends_promql(expr: str, app: str) -> str:
    """A PromQL panel query as Grafana sends it for one app (a name without regex characters, which Grafana
    would escape) and a short time range."""
    assert re.fullmatch(r"[\w-]+", app), app
    return expr.replace("$__rate_interval", "1m").replace("$app", app)


def as_grafana_sends_sql(sql: str, app: str) -> str:
    """A SQL panel query with Grafana's PostgreSQL macros expanded, for one app and the last hour."""
    sql = re.sub(r"\$__timeGroupAlias\((\w+), '1m'\)", r"date_trunc('minute', \1) AS time", sql)
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN now() - interval '1 hour' AND now()", sql)
    assert "$__" not in sql, f"a Grafana macro this test does not expand: {sql}"
    return sql.replace("$app", "'" + app.replace("'", "''") + "'")


class Prometheus:
    """A Prometheus server on a local port, with its data in a temporary directory."""

    def __init__(self, binary: str, config: Path, data: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=(data.parent / "prometheus.log").open("w"))

    def get(self, path: str, **params: str) -> dict:
        """GET an API path; the decoded answer's data (asserting success)."""
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        answer = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector."""
        return self.get("/api/v1/query", query=expr)["result"]

    def wait_until(self, expr: str, timeout_s: float = 60.0) -> list[dict]:
        """Wait until an instant query returns something."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if result := self.query(expr):
                    return result
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
        raise TimeoutError(f"no result for {expr} in {timeout_s}s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def test_every_dashboard_query_answers_for_a_real_run(tmp_path, kafka_bootstrap, pg_dsn, prometheus_tools):
    projector_port, agent_port = free_port(), free_port()
    c = Cluster.one_module(tmp_path, kafka_bootstrap, pg_dsn, "dash", "work", FAILS_ON_BAD)
    app = c.spec.name
    (tmp_path / "data").mkdir()
    prometheus = Prometheus(prometheus_tools[0], local_config(tmp_path, projector_port, agent_port), tmp_path / "data")
    try:
        c.start_projector("--metrics-port", str(projector_port))
        c.start_agent("work", 2, "--metrics-port", str(agent_port))
        up = prometheus.wait_until('sum(up{job=~"scalebox-.*"}) == 2')
        assert up, "both scrape jobs reach their targets"
        c.wait(c.send("work", [f"ok{i}" for i in range(6)] + ["bad1"]), timeout_s=120)
        prometheus.wait_until(f'scalebox_agent_attempts_finished_total{{app="{app}", outcome="failed"}} >= 1')
        time.sleep(3)  # a few more scrapes, so that rates over the last minute see the run

        assert app in prometheus.get("/api/v1/label/app/values", **{"match[]": "scalebox_agent_slots"})
        answers = {}
        for title, target in dashboard_targets("prometheus"):
            result = prometheus.query(as_grafana_sends_promql(target["expr"], app))
            assert result or any(name in target["expr"] for name in MAY_BE_EMPTY), f"{title}: {target['expr']}"
            answers[(title, target["refId"])] = {frozenset(r["metric"].items()): float(r["value"][1]) for r in result}
        ended = answers[("Attempts ended per second", "A")]
        assert ended[frozenset({"app": app, "module": "work", "outcome": "succeeded"}.items())] > 0
        assert ended[frozenset({"app": app, "module": "work", "outcome": "failed"}.items())] > 0
        assert answers[("Slots busy / slots", "B")] == {frozenset({"app": app, "module": "work"}.items()): 2.0}
        assert answers[("Agents per module", "A")] == {frozenset({"app": app, "module": "work"}.items()): 1.0}

        with psycopg.connect(pg_dsn) as conn:
            for title, target in dashboard_targets("grafana-postgresql-datasource"):
                rows = conn.execute(as_grafana_sends_sql(target["rawSql"], app)).fetchall()
                assert rows, f"{title}: no rows"
            statuses = conn.execute(as_grafana_sends_sql(dashboard_targets("grafana-postgresql-datasource")[0][1]
                                                         ["rawSql"], app)).fetchall()
        assert statuses == [("work", "failed", 1), ("work", "succeeded", 6)]
    finally:
        prometheus.stop()
        c.close()
