"""The state owners' state machine (no Kafka): values, replies, request-id deduplication, refusals, patterns."""

from __future__ import annotations

from collections import ChainMap

import pytest

from scalebox_stream.state.machine import apply
from scalebox_stream.state.model import (
    APP,
    BELOW_ZERO,
    CONFLICT,
    DELETED,
    ERROR,
    EXISTS,
    GLOBAL,
    INVALID,
    NOT_FOUND,
    OK,
    RECENT_MAX,
    SEMAPHORE,
    VARIABLE,
    Command,
    Item,
    Key,
    Reply,
    compile_pattern,
    is_pattern,
    partition_of,
)


class Store:
    """An owner's partition in memory: applies commands and keeps their changes."""

    def __init__(self) -> None:
        self.items: dict[Key, Item] = {}
        self.seq = 0

    def run(self, op: str, name: str, kind: str = SEMAPHORE, app: str = "a", req: str | None = None, **kw) -> Reply:
        self.seq += 1
        outcome = apply(self.items, Command(req or f"r{self.seq}", op, kind, app, name, **kw))
        for change in outcome.changes:
            self.items[change.key] = change.item
        return outcome.reply

    def value(self, name: str, kind: str = SEMAPHORE, app: str = "a") -> object:
        return self.items[(kind, app, name)].value


def test_create_get_and_add_return_the_new_value() -> None:
    s = Store()
    assert s.run("create", "x", value=5).code == OK
    assert s.run("get", "x").value == 5
    assert s.run("add", "x", n=1).value == 6
    assert s.run("add", "x", n=-2).value == 4
    assert s.run("add", "x", n=10).value == 14
    assert s.items[(SEMAPHORE, "a", "x")].version == 4


def test_missing_semaphore_is_not_found_unless_auto_created() -> None:
    s = Store()
    assert s.run("get", "nope").code == NOT_FOUND
    assert s.run("add", "nope", n=1).code == NOT_FOUND
    assert (SEMAPHORE, "a", "nope") not in s.items
    assert s.run("get", "g", auto_create=True).value == 0
    assert s.run("add", "h", n=3, auto_create=True).value == 3
    assert s.value("g") == 0 and s.value("h") == 3


def test_a_repeated_request_gets_the_first_answer_and_applies_once() -> None:
    s = Store()
    s.run("create", "x", value=0)
    first = s.run("add", "x", n=5, req="same")
    s.run("add", "x", n=1)
    again = s.run("add", "x", n=5, req="same")
    assert first.value == again.value == 5
    assert s.value("x") == 6


def test_deduplication_survives_a_restore_from_the_changelog_value() -> None:
    s = Store()
    s.run("create", "x", value=0)
    s.run("add", "x", n=7, req="req-1")
    restored = Store()
    restored.items = {k: Item.from_json(v.to_json()) for k, v in s.items.items()}  # what the changelog holds
    assert restored.run("add", "x", n=7, req="req-1").value == 7
    assert restored.value("x") == 7


def test_the_remembered_requests_are_bounded() -> None:
    s = Store()
    s.run("create", "x", value=0)
    for i in range(RECENT_MAX + 10):
        s.run("add", "x", n=1, req=f"q{i}")
    recent = s.items[(SEMAPHORE, "a", "x")].recent
    assert len(recent) == RECENT_MAX
    assert "q0" not in recent and f"q{RECENT_MAX + 9}" in recent


def test_decrement_below_zero_is_refused_unless_allowed() -> None:
    s = Store()
    s.run("create", "x", value=1)
    assert s.run("add", "x", n=-1).value == 0
    refused = s.run("add", "x", n=-1)
    assert (refused.code, refused.reason, refused.value) == (ERROR, BELOW_ZERO, 0)
    assert s.value("x") == 0
    assert s.run("add", "x", n=-2, allow_negative=True).value == -2
    assert s.run("add", "x", n=1).value == -1  # going up from below zero is fine


def test_compare_and_add_refuses_a_moved_value() -> None:
    s = Store()
    s.run("create", "x", value=3)
    moved = s.run("add", "x", n=1, expect=2)
    assert (moved.code, moved.reason, moved.value) == (ERROR, CONFLICT, 3)
    assert s.run("add", "x", n=1, expect=3).value == 4


def test_create_of_an_existing_semaphore() -> None:
    s = Store()
    s.run("create", "x", value=3)
    exists = s.run("create", "x", value=9)
    assert (exists.code, exists.reason) == (ERROR, EXISTS)
    assert s.run("create", "x", value=9, conflict="ignore").code == OK
    assert s.value("x") == 3
    assert s.run("create", "x", value=9, conflict="overwrite").code == OK
    assert s.value("x") == 9
    assert s.run("create", "y", value="ten").reason == INVALID


def test_variables_globals_and_app_results_are_text() -> None:
    s = Store()
    assert s.run("get", "v", kind=VARIABLE).code == NOT_FOUND
    s.run("set", "v", kind=VARIABLE, value="hello")
    s.run("set", "v", kind=VARIABLE, value="again")
    assert s.run("get", "v", kind=VARIABLE).value == "again"
    assert s.run("get", "v", kind=VARIABLE, app="other").code == NOT_FOUND  # variables are per app
    s.run("set", "g", kind=GLOBAL, app="", value="42")
    assert s.run("get", "g", kind=GLOBAL, app="").value == "42"
    s.run("set", "result", kind=APP, value="168")
    assert s.value("result", kind=APP) == "168"
    assert s.run("set", "x", value="1").reason == INVALID  # a semaphore is not set
    assert s.run("add", "v", kind=VARIABLE, n=1).reason == INVALID


def test_changes_carry_the_old_value_and_the_request() -> None:
    items: dict[Key, Item] = {}
    created = apply(items, Command("c", "create", SEMAPHORE, "a", "x", value=2))
    assert [(c.op, c.old, c.item.value, c.request_id) for c in created.changes] == [("create", None, 2, "c")]
    items[created.changes[0].key] = created.changes[0].item
    added = apply(items, Command("d", "add", SEMAPHORE, "a", "x", n=3))
    assert [(c.op, c.old, c.item.value, c.item.version) for c in added.changes] == [("add", 2, 5, 2)]
    assert items[("semaphore", "a", "x")].value == 2  # apply never changes what it reads


def test_apply_reads_through_an_overlay_without_writing_the_store() -> None:
    store = {(SEMAPHORE, "a", "x"): Item(1)}
    overlay: dict[Key, Item] = {}
    view = ChainMap(overlay, store)
    for i in range(3):
        for change in apply(view, Command(f"r{i}", "add", SEMAPHORE, "a", "x", n=1)).changes:
            overlay[change.key] = change.item
    assert overlay[(SEMAPHORE, "a", "x")].value == 4
    assert store[(SEMAPHORE, "a", "x")].value == 1  # a rolled-back batch leaves the store as it was


def test_scan_matches_prefixes_and_patterns_of_one_app_and_kind() -> None:
    s = Store()
    for name, value in [("p:h1", 1), ("p:h2", 5), ("p:h10", 3), ("q:h1", 9)]:
        s.run("create", name, value=value)
    s.run("create", "p:h1", value=100, app="other")
    s.run("set", "p:var", kind=VARIABLE, value="v")
    assert s.run("scan", "p:h").values == {"p:h1": 1, "p:h2": 5, "p:h10": 3}
    assert s.run("scan", ".*h1$").values == {"p:h1": 1, "q:h1": 9}
    assert s.run("scan", "").values == {"p:h1": 1, "p:h2": 5, "p:h10": 3, "q:h1": 9}
    assert s.run("scan", "(bad").reason == INVALID


def test_add_matching_applies_to_each_match_once() -> None:
    s = Store()
    for name, value in [("p:1", 0), ("p:2", 4), ("z", 0)]:
        s.run("create", name, value=value)
    reply = s.run("add_matching", "p:", n=1, req="m")
    assert reply.values == {"p:1": 1, "p:2": 5}
    assert s.run("add_matching", "p:", n=1, req="m").values == {"p:1": 1, "p:2": 5}  # a retry
    refused = s.run("add_matching", "p:", n=-2)
    assert (refused.code, refused.reason, refused.values) == (ERROR, BELOW_ZERO, {"p:2": 3})
    assert (s.value("p:1"), s.value("p:2"), s.value("z")) == (1, 3, 0)


@pytest.mark.parametrize(("name", "pattern"), [("app-primes:sum_value", False), ("a.b", True), ("x*", True),
                                               (r"a\.b", False), ("^x", True), ("node_progress:m:h-1", False)])
def test_a_name_with_an_unescaped_metacharacter_is_a_pattern(name: str, pattern: bool) -> None:
    assert is_pattern(name) is pattern


def test_a_pattern_is_anchored_unless_it_starts_with_a_metacharacter() -> None:
    assert compile_pattern("ab").search("xab") is None
    assert compile_pattern("ab").search("abc")
    assert compile_pattern(".*b").search("xab")


def test_an_item_lands_on_one_partition() -> None:
    assert partition_of("app", "x", 6) == partition_of("app", "x", 6)
    assert {partition_of("app", f"s{i}", 6) for i in range(100)} == set(range(6))


def test_delete_leaves_a_tombstone_and_a_retry_gets_its_first_answer() -> None:
    s = Store()
    s.run("create", "x", value=5)
    s.run("add", "x", n=1)
    outcome = apply(s.items, Command("del-1", "delete", SEMAPHORE, "a", "x"))
    assert outcome.reply.code == OK
    gone, memory = outcome.changes
    assert (gone.key, gone.op, gone.old, gone.item, gone.version, gone.event) == \
        ((SEMAPHORE, "a", "x"), "delete", 6, None, 3, True)
    assert (memory.key, memory.event, memory.item.recent) == (DELETED, False, {"del-1": [OK, None]})
    for change in outcome.changes:
        s.items[change.key] = change.item
    assert s.run("get", "x").code == NOT_FOUND
    assert s.run("delete", "x").code == NOT_FOUND
    assert s.run("create", "x", value=1).code == OK and s.items[(SEMAPHORE, "a", "x")].version == 1
    assert s.run("delete", "x", req="del-1").code == OK, "a retry gets the first answer"
    assert s.value("x") == 1, "and deletes nothing: the re-created one stays"
    assert s.run("scan", "").values == {"x": 1}


def test_variables_and_globals_are_deleted_but_not_an_app_result() -> None:
    s = Store()
    s.run("set", "v", kind=VARIABLE, value="1")
    s.run("set", "g", kind=GLOBAL, app="", value="2")
    s.run("set", "result", kind=APP, value="3")
    assert s.run("delete", "v", kind=VARIABLE).code == OK
    assert s.run("delete", "g", kind=GLOBAL, app="").code == OK
    assert s.run("get", "v", kind=VARIABLE).code == NOT_FOUND
    assert s.run("get", "g", kind=GLOBAL, app="").code == NOT_FOUND
    assert s.run("delete", "result", kind=APP).reason == INVALID
    assert s.items[DELETED].value == 2, "the partition's delete memory counts its deletes"


def test_an_overlay_s_delete_hides_the_committed_item() -> None:
    store = {(SEMAPHORE, "a", "x"): Item(1), (SEMAPHORE, "a", "y"): Item(2)}
    overlay: dict[Key, Item | None] = {}
    view = ChainMap(overlay, store)
    for change in apply(view, Command("d", "delete", SEMAPHORE, "a", "x")).changes:
        overlay[change.key] = change.item
    assert apply(view, Command("g", "get", SEMAPHORE, "a", "x")).reply.code == NOT_FOUND
    assert apply(view, Command("s", "scan", SEMAPHORE, "a", "")).reply.values == {"y": 2}
    assert apply(view, Command("m", "add_matching", SEMAPHORE, "a", ".*", n=1)).reply.values == {"y": 3}
    assert (SEMAPHORE, "a", "x") in store
