"""`launch.plan_mirror`: what `scalebox mirror` refuses, in which order, and when it asks for the home bootstrap."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalebox_stream.launch.errors import OperationError
from scalebox_stream.launch.mirror import plan_mirror
from scalebox_stream.spec import load_app

SPREAD = """name: spread
cluster: home
modules:
  scatter: {command: [/bin/true], sink_modules: [calc]}
  calc: {command: [/bin/true], cluster: far}
"""


def _app(tmp_path: Path, text: str, name: str = "app.yaml"):
    (tmp_path / name).write_text(text)
    return load_app(tmp_path / name)


def _never() -> str:
    raise AssertionError("the home bootstrap was asked for although given or not needed")


def test_a_plan_with_every_bootstrap(tmp_path: Path) -> None:
    plan = plan_mirror([_app(tmp_path, SPREAD)], {"far": "f:1"}, lambda: "h:1", 1)
    assert plan.home == "home" and [(f.source, f.target) for f in plan.flows] == [("home", "far"), ("far", "home")]
    assert "home.bootstrap.servers = h:1" in plan.properties and "far.bootstrap.servers = f:1" in plan.properties
    given = plan_mirror([_app(tmp_path, SPREAD)], {"far": "f:1", "home": "g:1"}, _never, 1)
    assert "home.bootstrap.servers = g:1" in given.properties


def test_refusals_in_order(tmp_path: Path) -> None:
    one = _app(tmp_path, "name: one\nmodules:\n  a: {command: [/bin/true]}\n", "one.yaml")
    with pytest.raises(OperationError, match="every module runs on the home cluster 'local': nothing to mirror"):
        plan_mirror([one], {}, _never, 1)
    other = _app(tmp_path, SPREAD.replace("cluster: home", "cluster: elsewhere").replace("name: spread", "name: o"),
                 "other.yaml")
    with pytest.raises(OperationError) as different_homes:
        plan_mirror([_app(tmp_path, SPREAD), other], {}, _never, 1)
    assert different_homes.value.code == 2
    with pytest.raises(OperationError, match=r"no app runs a module on cluster\(s\) moon"):
        plan_mirror([_app(tmp_path, SPREAD)], {"far": "f:1", "moon": "m:1"}, lambda: "h:1", 1)
    with pytest.raises(OperationError, match=r"no bootstrap servers for cluster\(s\) far: give --cluster"):
        plan_mirror([_app(tmp_path, SPREAD)], {}, lambda: "h:1", 1)
