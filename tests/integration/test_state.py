"""Shared state on the log, end to end on the real broker (and PostgreSQL for the projection): exact counts under
concurrency and owner crashes, one answer per request, restore from the changelog, the projection, the CLI.

Each test runs its own owner process on state topics of its own (`sbx.test.state.*`, deleted with the session).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from pipeline import scalebox
from state_support import (
    CALLS,
    OwnerProcess,
    assert_exact,
    changelog_state,
    commit_end_offsets,
    hammer,
    private_topics,
    replies_by_id,
)

from scalebox_stream.state import api
from scalebox_stream.state.client import StateClient
from scalebox_stream.state.model import OK, SEMAPHORE, VARIABLE, StateTopics
from scalebox_stream.state.owner import Owner


@pytest.fixture
def topics(kafka_bootstrap: str) -> StateTopics:
    return private_topics(kafka_bootstrap)


@pytest.fixture
def owner(kafka_bootstrap: str, topics: StateTopics, tmp_path: Path):
    process = OwnerProcess(kafka_bootstrap, topics, "o1", tmp_path).start()
    yield process
    process.stop()


def test_concurrent_increments_are_exact(kafka_bootstrap: str, topics: StateTopics, owner: OwnerProcess) -> None:
    app = f"t{uuid.uuid4().hex[:6]}"
    results = hammer(kafka_bootstrap, topics, app, "sum_value", [0])
    assert_exact(kafka_bootstrap, topics, app, "sum_value", results)


def test_owner_killed_twice_loses_and_repeats_nothing(kafka_bootstrap: str, topics: StateTopics,
                                                      owner: OwnerProcess) -> None:
    app, progress = f"t{uuid.uuid4().hex[:6]}", [0]
    outcome: dict[str, list] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault(
        "results", hammer(kafka_bootstrap, topics, app, "sum_value", progress)))
    runner.start()
    for at in (CALLS // 3, 2 * CALLS // 3):
        deadline = time.monotonic() + 120
        while progress[0] < at and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert runner.is_alive(), "the run ended before the owner could be killed"
        owner.kill()
        owner.start()
    runner.join(300)
    assert "results" in outcome, "the clients failed (see the captured output)"
    replies = replies_by_id(kafka_bootstrap, topics)
    assert len(replies) == CALLS, "one reply per request id (resends answered under the same id)"
    for rid, answers in replies.items():
        assert len({(r["code"], r["value"]) for r in answers}) == 1, f"{rid} answered differently: {answers}"
    assert_exact(kafka_bootstrap, topics, app, "sum_value", outcome["results"])


def test_a_fresh_owner_restores_the_values_from_the_changelog(kafka_bootstrap: str, topics: StateTopics,
                                                              owner: OwnerProcess) -> None:
    app = f"t{uuid.uuid4().hex[:6]}"
    expected: dict[str, int] = {}
    with StateClient(kafka_bootstrap, topics) as client:
        for i in range(40):
            name = f"s{i % 13}"
            reply = client.call(client.command("add", SEMAPHORE, app, name, n=i, auto_create=True))
            expected[name] = reply.value
        client.call(client.command("set", VARIABLE, app, "router", value="pos-7"))
    assert owner.stop() == 0
    new_group = f"{topics.prefix}.fresh"
    commit_end_offsets(kafka_bootstrap, topics, new_group)
    fresh_topics = StateTopics(topics.prefix, owner_group=new_group)
    stop, ready = threading.Event(), threading.Event()
    fresh = Owner(kafka_bootstrap, fresh_topics, "fresh", stop=stop, on_ready=ready.set)
    thread = threading.Thread(target=fresh.run)
    thread.start()
    try:
        assert ready.wait(60), "the fresh owner was not assigned its partitions"
        assert sum(fresh.stats.restored.values()) == len(expected) + 1
        with StateClient(kafka_bootstrap, fresh_topics) as client:
            assert json.loads(api.list_items(client, SEMAPHORE, app).output) == expected
            assert api.variable_get(client, app, "router").output == "pos-7"
            assert client.call(client.command("add", SEMAPHORE, app, "s1", n=1)).value == expected["s1"] + 1
    finally:
        stop.set()
        thread.join(30)
    from_log = {k[2]: v.value for k, v in changelog_state(kafka_bootstrap, topics).items()
                if k[0] == SEMAPHORE and k[1] == app}
    assert from_log == {**expected, "s1": expected["s1"] + 1}


def test_the_projection_shows_values_and_history(kafka_bootstrap: str, pg_dsn: str, topics: StateTopics,
                                                 owner: OwnerProcess) -> None:
    app = f"t{uuid.uuid4().hex[:6]}"
    with StateClient(kafka_bootstrap, topics) as client:
        client.call(client.command("create", SEMAPHORE, app, "gate", value=2))
        for _ in range(3):
            client.call(client.command("add", SEMAPHORE, app, "gate", n=-1, allow_negative=True))
        client.call(client.command("set", VARIABLE, app, "pos", value="a"))
        client.call(client.command("set", VARIABLE, app, "pos", value="b"))
        assert api.app_set_finished(client, app, "168").code == OK
    caught_up = scalebox(["projector", "--until-caught-up"], kafka_bootstrap, pg_dsn)
    assert caught_up.code == 0, caught_up.stderr
    with psycopg.connect(pg_dsn) as conn:
        values = conn.execute("SELECT kind, name, value, version FROM state_values WHERE app = %s ORDER BY kind, name",
                              (app,)).fetchall()
        history = conn.execute("SELECT name, op, old_value, value FROM state_history WHERE app = %s "
                               "ORDER BY kind, name, version", (app,)).fetchall()
    assert values == [("app", "result", "168", 1), ("semaphore", "gate", "-1", 4), ("variable", "pos", "b", 2)]
    assert history == [("result", "set", None, "168"),
                       ("gate", "create", None, "2"), ("gate", "add", "2", "1"), ("gate", "add", "1", "0"),
                       ("gate", "add", "0", "-1"),
                       ("pos", "set", None, "a"), ("pos", "set", "a", "b")]


def test_cli_codes_and_output(kafka_bootstrap: str, topics: StateTopics, owner: OwnerProcess,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEBOX_STATE_PREFIX", topics.prefix)
    app = f"t{uuid.uuid4().hex[:6]}"

    def sbx(*args: str, **env: str):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        try:
            return scalebox(list(args), kafka_bootstrap, "unused")
        finally:
            for k in env:
                monkeypatch.delenv(k)

    created = sbx("semaphore", "create", "--app", app, "app-primes:sum_value", "0")
    assert (created.code, created.stdout) == (0, "")
    added = sbx("semaphore", "increment-n", "app-primes:sum_value", "25", APP_ID=app)
    assert (added.code, added.stdout) == (0, "25\n")
    assert sbx("semaphore", "increment-n", "app-primes:sum_value", "-5", APP_ID=app).stdout == "20\n"
    got = sbx("semaphore", "get", "app-primes:sum_value", APP_ID=app)
    assert (got.code, got.stdout) == (0, "20\n")
    missing = sbx("semaphore", "get", "nope", APP_ID=app)
    assert (missing.code, missing.stdout) == (2, "")
    assert "not found" in missing.stderr
    auto = sbx("semaphore", "get", "nope", APP_ID=app, SEMAPHORE_AUTO_CREATE="yes")
    assert (auto.code, auto.stdout) == (0, "0\n")
    refused = sbx("semaphore", "decrement", "nope", APP_ID=app)
    assert (refused.code, refused.stdout) == (1, "")
    assert "below zero" in refused.stderr
    assert sbx("semaphore", "decrement", "nope", "--allow-negative", APP_ID=app).stdout == "-1\n"
    exists = sbx("semaphore", "create", "nope", "3", APP_ID=app)
    assert exists.code == 1
    assert sbx("semaphore", "create", "nope", "3", APP_ID=app, CONFLICT_ACTION="IGNORE").code == 0
    for host, value in [("h1", 3), ("h2", 1), ("h3", 1)]:
        sbx("semaphore", "create", f"node_progress:m:{host}", str(value), APP_ID=app)
    listing = sbx("semaphore", "get", "node_progress:.*", APP_ID=app)
    assert listing.stdout == '{"node_progress:m:h1":3,"node_progress:m:h2":1,"node_progress:m:h3":1}\n'
    assert sbx("semaphore", "list", APP_ID=app).stdout == (
        '{"app-primes:sum_value":20,"node_progress:m:h1":3,"node_progress:m:h2":1,"node_progress:m:h3":1,'
        '"nope":-1}\n')
    assert sbx("semagroup", "min", "node_progress:m:", APP_ID=app).stdout == '"node_progress:m:h2":1\n'
    assert sbx("semagroup", "max", "node_progress:m:", APP_ID=app).stdout == '"node_progress:m:h1":3\n'
    assert sbx("semagroup", "increment", "node_progress:m:", APP_ID=app).stdout == '"node_progress:m:h2":2\n'
    assert sbx("semagroup", "decrement", "node_progress:m:", APP_ID=app).stdout == '"node_progress:m:h1":2\n'
    assert sbx("semagroup", "diffmax", "(node_progress:m:h)3", APP_ID=app).stdout == "1\n"
    assert sbx("semagroup", "diffmin", "(node_progress:m:h)1", APP_ID=app).stdout == "1\n"
    assert sbx("semagroup", "min", "nothing:", APP_ID=app).code == 2
    assert sbx("variable", "get", "v", APP_ID=app).code == 2
    assert sbx("variable", "set", "v", "hello world", APP_ID=app).code == 0
    assert sbx("variable", "get", "v", APP_ID=app).stdout == "hello world\n"
    glob = f"g{uuid.uuid4().hex[:6]}"
    assert sbx("global", "get", glob).code == 2
    assert sbx("global", "set", glob, "42").code == 0
    assert sbx("global", "get", glob).stdout == "42\n"
    assert sbx("app", "set-finished", "168", APP_ID=app).code == 0
    no_app = sbx("semaphore", "get", "x")
    assert no_app.code == 1 and "APP_ID" in no_app.stderr


def test_without_an_owner_a_call_times_out(kafka_bootstrap: str, topics: StateTopics) -> None:
    with StateClient(kafka_bootstrap, topics, timeout_s=1, resend_s=0.4) as client, \
            pytest.raises(TimeoutError, match="owner"):
        client.call(client.command("get", SEMAPHORE, "a", "x"))


def test_a_command_with_no_owner_running_serves_itself(kafka_bootstrap: str, topics: StateTopics,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """After `scalebox run` stopped its owner, `scalebox semaphore get --app APP NAME` still answers: the command
    runs an owner of its own for its duration (and leaves the group after)."""
    monkeypatch.setenv("SCALEBOX_STATE_PREFIX", topics.prefix)
    app = f"t{uuid.uuid4().hex[:6]}"
    created = scalebox(["semaphore", "create", "--app", app, "gate", "2"], kafka_bootstrap, "unused")
    assert created.code == 0, created.stderr
    added = scalebox(["semaphore", "increment-n", "--app", app, "gate", "40"], kafka_bootstrap, "unused")
    assert (added.code, added.stdout) == (0, "42\n"), added.stderr
    got = scalebox(["semaphore", "get", "--app", app, "gate"], kafka_bootstrap, "unused")
    assert (got.code, got.stdout, got.stderr) == (0, "42\n", "")
    from scalebox_stream.state.service import owners_serving

    assert not owners_serving(kafka_bootstrap, topics), "the command's owner left the group"
