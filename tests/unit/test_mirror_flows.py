"""Which topics MirrorMaker 2 copies for an app spread over clusters, and the configuration that copies them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scalebox_stream.mirror.flows import Flow, clusters, flows, merged
from scalebox_stream.mirror.properties import render
from scalebox_stream.spec import load_app


def _app(tmp_path: Path, text: str):
    (tmp_path / "app.yaml").write_text(text)
    return load_app(tmp_path / "app.yaml")


SPREAD = """name: spread
cluster: home
modules:
  scatter: {command: [/bin/true], sink_modules: [calc]}
  calc: {command: [/bin/true], cluster: far, sink_modules: [gather]}
  gather: {command: [/bin/true]}
"""


def _copied(flow: Flow, topic: str) -> bool:
    return any(re.fullmatch(pattern, topic) for pattern in flow.topics)


def test_tasks_go_to_the_cluster_of_their_module_and_events_come_home(tmp_path):
    spec = _app(tmp_path, SPREAD)
    assert clusters(spec) == ["home", "far"]
    out, back = flows(spec)
    assert (out.source, out.target, back.source, back.target) == ("home", "far", "far", "home")
    assert _copied(out, "sbx.tasks.spread.calc") and _copied(out, "sbx.tasks.spread.calc.host.n-01")
    assert not _copied(out, "sbx.tasks.spread.scatter") and not _copied(out, "sbx.tasks.spread.calcx")
    assert _copied(out, "sbx.apps") and _copied(out, "sbx.control") and not _copied(out, "sbx.events")
    assert _copied(back, "sbx.tasks.spread.gather") and _copied(back, "sbx.tasks.spread.scatter")
    assert _copied(back, "sbx.events") and _copied(back, "sbx.dlq")
    assert not _copied(back, "sbx.tasks.spread.calc") and not _copied(back, "sbx.apps")


def test_no_topic_flows_both_ways_between_two_clusters(tmp_path):
    spec = _app(tmp_path, SPREAD.replace("gather: {command: [/bin/true]}",
                                         "gather: {command: [/bin/true], cluster: third}"))
    assert clusters(spec) == ["home", "far", "third"]
    every = {(f.source, f.target): f for f in flows(spec)}
    topics = ["sbx.events", "sbx.dlq", "sbx.apps", "sbx.control"] + [f"sbx.tasks.spread.{m}" for m in spec.modules]
    for (source, target), flow in every.items():
        back = every.get((target, source))
        for topic in topics:
            assert not (_copied(flow, topic) and back is not None and _copied(back, topic)), (source, target, topic)
    assert _copied(every[("far", "third")], "sbx.tasks.spread.gather"), "far sends gather its tasks directly"
    assert not _copied(every[("far", "third")], "sbx.events"), "events go home only"


def test_an_app_on_one_cluster_needs_no_mirror(tmp_path):
    assert flows(_app(tmp_path, "name: one\nmodules:\n  a: {command: [/bin/true]}\n")) == []


def test_properties_name_every_flow_and_copy_only_committed_records_exactly_once(tmp_path):
    text = render(flows(_app(tmp_path, SPREAD)), {"home": "h:9092", "far": "f:9092"}, replication_factor=1)
    # Java properties: a backslash escapes the next character (the patterns' `\.` must reach MirrorMaker as such)
    pairs = (line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    props = {key: value.replace("\\\\", "\\") for key, value in pairs}
    assert props["clusters"] == "home, far"
    assert props["home.bootstrap.servers"] == "h:9092" and props["far.bootstrap.servers"] == "f:9092"
    assert props["replication.policy.class"].endswith("IdentityReplicationPolicy")
    assert props["home->far.enabled"] == props["far->home.enabled"] == "true"
    assert "sbx\\.events" in props["far->home.topics"] and "sbx\\.events" not in props["home->far.topics"]
    assert props["far.consumer.isolation.level"] == "read_committed"
    assert props["far.exactly.once.source.support"] == "enabled"
    assert props["offset-syncs.topic.replication.factor"] == "1"


def test_properties_need_every_clusters_bootstrap(tmp_path):
    with pytest.raises(ValueError, match="far"):
        render(flows(_app(tmp_path, SPREAD)), {"home": "h:9092"})


def test_apps_that_share_clusters_are_mirrored_together_and_must_share_their_home(tmp_path):
    for name in "abc":
        (tmp_path / name).mkdir()
    spread, other = _app(tmp_path / "a", SPREAD), _app(tmp_path / "b", SPREAD.replace("spread", "other"))
    (out, back) = merged([spread, other])
    assert _copied(out, "sbx.tasks.spread.calc") and _copied(out, "sbx.tasks.other.calc")
    assert _copied(back, "sbx.tasks.other.gather") and list(back.topics).count("sbx\\.events") == 1
    elsewhere = _app(tmp_path / "c", SPREAD.replace("name: spread", "name: far-home").replace("cluster: home",
                                                                                            "cluster: far"))
    with pytest.raises(ValueError, match="share their home cluster"):
        merged([spread, elsewhere])


def test_the_example_configuration_in_connectors_is_what_scalebox_mirror_writes():
    repo = Path(__file__).resolve().parents[2]
    spec = load_app(repo / "examples" / "primes" / "app-cross-cluster.yaml")
    expected = render(merged([spec]), {"home": "home-kafka:9092", "far": "far-kafka:9092"})
    assert (repo / "connectors" / "mm2-primes-cc.properties").read_text() == expected
