"""The agent's metrics: every outcome exists at 0 from the start, and counts land on the agent's own labels."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from scalebox_stream.agent.identity import AgentIdentity
from scalebox_stream.agent.telemetry import AgentTelemetry
from scalebox_stream.launch.run import metrics_ports
from scalebox_stream.policy.outcome import OUTCOMES


def _labels(identity: AgentIdentity, **more: str) -> dict[str, str]:
    return {"app": identity.app, "module": identity.module, "cluster": identity.cluster, "host": identity.host, **more}


def test_outcomes_and_transaction_results_exist_at_zero_before_anything_happens():
    identity = AgentIdentity(f"app-{uuid.uuid4().hex[:6]}", "m", host="h1", cluster="c1")
    AgentTelemetry(identity)
    get = REGISTRY.get_sample_value
    for outcome in OUTCOMES:
        assert get("scalebox_agent_attempts_finished_total", _labels(identity, outcome=outcome)) == 0
    for outcome in ("committed", "failed"):
        assert get("scalebox_agent_transactions_total", _labels(identity, outcome=outcome)) == 0


def test_counts_and_gauges_land_on_the_agents_labels_only():
    one = AgentIdentity(f"app-{uuid.uuid4().hex[:6]}", "m", host="h1")
    other = AgentIdentity(one.app, "n", host="h1")
    telemetry, _ = AgentTelemetry(one), AgentTelemetry(other)
    busy = [3]
    telemetry.watch(4, busy=lambda: busy[0], buffered=lambda: 7, suspended=lambda: 0, held=lambda: 1,
                    backlog=lambda: 12)
    telemetry.attempt_started()
    telemetry.attempt_finished("failed", 2.0)
    telemetry.transaction(0.004, committed=True)
    telemetry.transaction(0.5, committed=False)
    get = REGISTRY.get_sample_value
    assert get("scalebox_agent_attempts_started_total", _labels(one)) == 1
    assert get("scalebox_agent_attempts_started_total", _labels(other)) == 0
    assert get("scalebox_agent_attempts_finished_total", _labels(one, outcome="failed")) == 1
    assert get("scalebox_agent_attempt_seconds_sum", _labels(one)) == 2.0
    assert get("scalebox_agent_transactions_total", _labels(one, outcome="failed")) == 1
    assert get("scalebox_agent_transaction_seconds_count", _labels(one)) == 1, "only committed ones are timed"
    assert get("scalebox_agent_slots", _labels(one)) == 4
    assert get("scalebox_agent_tasks_buffered", _labels(one)) == 7
    assert get("scalebox_agent_held_by_backpressure", _labels(one)) == 1
    assert get("scalebox_agent_module_backlog", _labels(one)) == 12
    busy[0] = 0
    assert get("scalebox_agent_slots_busy", _labels(one)) == 0, "gauges are read when scraped"


def test_run_gives_the_projector_the_first_metrics_port_and_each_agent_the_next():
    assert metrics_ports(9100, 2) == [["--metrics-port", "9100"], ["--metrics-port", "9101"],
                                      ["--metrics-port", "9102"]]
    assert metrics_ports(None, 2) == [[], [], []]
