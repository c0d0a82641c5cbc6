"""Which topics and consumer groups belong to an app (pure name matching)."""

from scalebox_stream.kafka.cleanup import app_groups, app_topics


def test_an_apps_topics_are_its_modules_and_their_host_topics() -> None:
    names = ["sbx.tasks.a.m", "sbx.tasks.a.m_2", "sbx.tasks.a.m.host.h1", "sbx.tasks.a.m.host.node-3.example.org",
             "sbx.events", "sbx.dlq"]
    assert app_topics("a", names) == sorted(names[:4])


def test_apps_whose_names_start_like_it_are_not_its() -> None:
    # "a2" and "a.b" are other apps; module names have no dots, so "sbx.tasks.a.b.m" is app "a.b"'s.
    names = ["sbx.tasks.a2.m", "sbx.tasks.a.b.m", "sbx.tasks.a.b.m.host.h1", "sbx.tasks.a"]
    assert app_topics("a", names) == []
    assert app_topics("a.b", names) == ["sbx.tasks.a.b.m", "sbx.tasks.a.b.m.host.h1"]


def test_an_apps_groups_are_one_per_module() -> None:
    groups = ["sbx.agents.a.m", "sbx.agents.a.n", "sbx.agents.a2.m", "sbx.agents.a.b.m", "sbx.projector"]
    assert app_groups("a", groups) == ["sbx.agents.a.m", "sbx.agents.a.n"]
    assert app_groups("a.b", groups) == ["sbx.agents.a.b.m"]
