"""The in-task tools' state requests: Scalebox's arguments, environment, output and codes, over an in-memory
state client."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fakes.state import FakeStateClient

from scalebox_stream.state.intask import StateToolHandler, parse
from scalebox_stream.state.model import APP, APP_RESULT, SEMAPHORE


@dataclass
class Caller:
    app: str = "primes"
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def client() -> FakeStateClient:
    return FakeStateClient()


@pytest.fixture
def handler(client: FakeStateClient) -> StateToolHandler:
    return StateToolHandler("unused", client_factory=lambda: client)


def test_increment_n_prints_the_new_value_and_auto_creates_from_the_environment(handler, client) -> None:
    auto = Caller(env={"SEMAPHORE_AUTO_CREATE": "yes"})
    assert handler.handle("semaphore increment-n", ["app-primes:sum_value", "25"], auto) == (0, "25")
    assert handler.handle("semaphore increment-n", ["app-primes:sum_value", "-5"], auto) == (0, "20")
    assert client.items[(SEMAPHORE, "primes", "app-primes:sum_value")].value == 20
    assert handler.handle("semaphore get", ["app-primes:sum_value"], Caller()) == (0, "20")


def test_not_found_below_zero_and_bad_arguments(handler) -> None:
    code, text = handler.handle("semaphore get", ["nope"], Caller())
    assert code == 2 and "not found" in text
    assert handler.handle("semaphore increment", ["nope"], Caller())[0] == 2
    assert handler.handle("semaphore create", ["gate", "1"], Caller()) == (0, "")
    assert handler.handle("semaphore decrement", ["gate"], Caller()) == (0, "0")
    code, text = handler.handle("semaphore decrement", ["gate"], Caller())
    assert code == 1 and "below zero" in text
    assert handler.handle("semaphore decrement", ["gate", "--allow-negative"], Caller()) == (0, "-1")
    assert handler.handle("semaphore decrement", ["gate"], Caller(env={"SEMAPHORE_ALLOW_NEGATIVE": "yes"})) \
        == (0, "-2")
    assert handler.handle("semaphore increment-n", ["gate", "x"], Caller())[0] == 1
    assert handler.handle("semaphore increment-n", ["gate"], Caller())[0] == 1
    assert handler.handle("semaphore create", ["gate", "5"], Caller())[0] == 1
    assert handler.handle("semaphore create", ["gate", "5"], Caller(env={"CONFLICT_ACTION": "OVERWRITE"})) == (0, "")
    assert handler.handle("semaphore get", ["gate"], Caller()) == (0, "5")
    assert handler.handle("task add", ["x"], Caller())[0] == 1


def test_the_task_app_unless_app_id_names_another(handler, client) -> None:
    handler.handle("variable set", ["pos", "7"], Caller())
    handler.handle("variable set", ["--app-id", "other", "pos", "8"], Caller())
    assert handler.handle("variable get", ["pos"], Caller()) == (0, "7")
    assert handler.handle("variable get", ["--app-id=other", "pos"], Caller()) == (0, "8")
    assert handler.handle("variable get", ["missing"], Caller())[0] == 2


def test_globals_groups_lists_and_the_app_result(handler, client) -> None:
    assert handler.handle("global set", ["g", "v 1"], Caller()) == (0, "")
    assert handler.handle("global get", ["g"], Caller(app="another")) == (0, "v 1")
    for host, value in (("h1", 3), ("h2", 1)):
        handler.handle("semaphore create", [f"progress:{host}", str(value)], Caller())
    assert handler.handle("semagroup min", ["progress:"], Caller()) == (0, '"progress:h2":1')
    assert handler.handle("semagroup increment", ["progress:"], Caller()) == (0, '"progress:h2":2')
    assert handler.handle("semaphore list", [], Caller()) == (0, '{"progress:h1":3,"progress:h2":2}')
    assert handler.handle("app set-finished", ["168"], Caller()) == (0, "")
    assert client.items[(APP, "primes", APP_RESULT)].value == "168"


def test_the_client_is_made_on_first_use_and_closed_with_the_handler(client) -> None:
    made: list[FakeStateClient] = []
    handler = StateToolHandler("unused", client_factory=lambda: made.append(client) or client)
    assert made == []
    handler.handle("global get", ["x"], Caller())
    handler.handle("global get", ["x"], Caller())
    assert made == [client]
    handler.close()
    assert client.closed
    code, text = handler.handle("global get", ["x"], Caller())
    assert code == 1 and "stopping" in text


def test_a_client_that_cannot_be_made_fails_that_request_only() -> None:
    attempts: list[int] = []

    def factory() -> FakeStateClient:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("no state topics")
        return FakeStateClient()

    handler = StateToolHandler("unused", client_factory=factory)
    assert handler.handle("global get", ["x"], Caller()) == (1, "scalebox global get: no state topics")
    assert handler.handle("global set", ["x", "1"], Caller()) == (0, "")


def test_parse_reads_options_anywhere_and_values_after_double_dash() -> None:
    pos, flags, app = parse(["--auto-create", "s", "--app", "a1", "--", "-3"], {})
    assert (pos, flags, app) == (["s", "-3"], {"auto_create": True, "allow_negative": False}, "a1")
    pos, _, _ = parse(["s", "-3"], {})
    assert pos == ["s", "-3"]


def test_add_value_is_increment_n_by_scalebox_name(handler, client) -> None:
    assert handler.handle("semaphore add-value", ["s", "4"], Caller(env={"SEMAPHORE_AUTO_CREATE": "yes"})) == (0, "4")
    assert handler.handle("semaphore add-value", ["s", "-3"], Caller()) == (0, "1")
    code, text = handler.handle("semaphore add-value", ["s", "-2"], Caller())
    assert code == 1 and "below zero" in text
    assert handler.handle("semaphore add-value", ["s", "-2", "--allow-negative"], Caller()) == (0, "-1")
    handler.handle("semaphore create", ["g:1", "1"], Caller())
    handler.handle("semaphore create", ["g:2", "2"], Caller())
    assert handler.handle("semaphore add-value", ["g:.*", "10"], Caller()) == (0, '{"g:1":11,"g:2":12}')
    assert handler.handle("semaphore add-value", ["s", "x"], Caller())[0] == 1
    assert handler.handle("semaphore add-value", ["s"], Caller())[0] == 1


def test_delete_of_each_kind_and_not_found(handler, client) -> None:
    handler.handle("semaphore create", ["s", "1"], Caller())
    handler.handle("variable set", ["v", "x"], Caller())
    handler.handle("global set", ["g", "y"], Caller())
    for kind, name in (("semaphore", "s"), ("variable", "v"), ("global", "g")):
        assert handler.handle(f"{kind} delete", [name], Caller()) == (0, "")
        assert handler.handle(f"{kind} get", [name], Caller())[0] == 2
        code, text = handler.handle(f"{kind} delete", [name], Caller())
        assert code == 2 and "not found" in text
    assert handler.handle("semaphore delete", [], Caller())[0] == 1


def test_lists_take_a_prefix_and_leaves_only(handler, client) -> None:
    for name, value in (("node:h1", 1), ("node:h1:s0", 2), ("node:h10", 3), ("vtask_size:m", 4), ("x.y", 5)):
        handler.handle("semaphore create", [name, str(value)], Caller())
    assert handler.handle("semaphore list", ["--prefix", "node:"], Caller()) == \
        (0, '{"node:h1":1,"node:h10":3,"node:h1:s0":2}')
    assert handler.handle("semaphore list", ["--leaf-only"], Caller()) == \
        (0, '{"node:h10":3,"node:h1:s0":2,"vtask_size:m":4,"x.y":5}')
    assert handler.handle("semaphore list", ["--prefix=x."], Caller()) == (0, '{"x.y":5}')
    assert handler.handle("semaphore list", ["--prefix", "x"], Caller()) == (0, '{"x.y":5}')
    assert handler.handle("semaphore list", ["--prefix", "."], Caller()) == (0, "{}"), "a prefix is no pattern"
    handler.handle("variable set", ["a:b", "1"], Caller())
    handler.handle("variable set", ["a:b:c", "2"], Caller())
    handler.handle("variable set", ["--app-id", "other", "a:z", "3"], Caller())
    assert handler.handle("variable list", ["--leaf-only"], Caller()) == (0, '{"a:b:c":"2"}')
    assert handler.handle("variable list", ["--prefix", "a:"], Caller()) == (0, '{"a:b":"1","a:b:c":"2"}')
    handler.handle("global set", ["gl:1", "v"], Caller())
    assert handler.handle("global list", ["--prefix", "gl:"], Caller(app="another")) == (0, '{"gl:1":"v"}')
