"""Batch semaphore creation (`semaphore create JSON` / `--sema-file`): parsing, outcomes, batching, in-task."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fakes.state import FakeStateClient

from scalebox_stream.state import api
from scalebox_stream.state.intask import SEMA_FILE_NAME, SEMA_FILE_TEXT, StateToolHandler
from scalebox_stream.state.model import ERROR, OK, SEMAPHORE


@dataclass
class Caller:
    app: str = "primes"
    env: dict[str, str] = field(default_factory=dict)


class CountingClient(FakeStateClient):
    """Records how many commands each `call_many` sent at once."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def call_many(self, cmds):
        self.batches.append(len(cmds))
        return super().call_many(cmds)


def _values(client: FakeStateClient, app: str = "primes") -> dict[str, int]:
    return {k[2]: v.value for k, v in client.items.items() if k[0] == SEMAPHORE and k[1] == app}


def test_the_json_form_takes_the_semaphores_map_or_a_bare_map() -> None:
    assert api.parse_semaphore_json('{"semaphores":{"s1":1,"s2":20}}') == {"s1": 1, "s2": 20}
    assert api.parse_semaphore_json('{"s1":-1}') == {"s1": -1}
    for bad, why in [("{", "not JSON"), ('{"semaphores":{}}', "at least one"), ("[1]", "at least one"),
                     ('{"semaphores":{"s1":"3"}}', "'s1'"), ('{"s1":true}', "integer"), ('{"s1":1.5}', "'s1'")]:
        with pytest.raises(ValueError, match=why):
            api.parse_semaphore_json(bad)


def test_sema_file_lines_and_their_errors_name_the_file_and_line() -> None:
    text = '"sema1":1\n\n  "node:h1" : 20 \n"s3":0,\n'
    assert api.parse_semaphore_lines(text, "my-sema.txt") == {"sema1": 1, "node:h1": 20, "s3": 0}
    with pytest.raises(ValueError, match=r"^my-sema.txt:3: expected \"name\":value .*'\"s3\":x'"):
        api.parse_semaphore_lines('"s1":1\n"s2":2\n"s3":x\n', "my-sema.txt")
    with pytest.raises(ValueError, match=r"^f.txt:2: .*'s1' is given twice"):
        api.parse_semaphore_lines('"s1":1\n"s1":2', "f.txt")
    with pytest.raises(ValueError, match=r"^f.txt: no semaphores"):
        api.parse_semaphore_lines("\n \n", "f.txt")
    with pytest.raises(ValueError, match=r"^f.txt:1:"):
        api.parse_semaphore_lines("s1:1", "f.txt")


def test_which_create_is_a_batch_the_cli_and_a_task_decide_alike() -> None:
    assert api.semaphores_to_create(["s", "3"], None, "f") is None, "NAME VALUE: one create"
    assert api.semaphores_to_create(['{"semaphores":{"a":1}}'], None, "f") == {"a": 1}
    assert api.semaphores_to_create([], '"a":1\n"b":2\n', "my.sema") == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="--sema-file takes no NAME or VALUE"):
        api.semaphores_to_create(["s"], '"a":1', "my.sema")
    with pytest.raises(ValueError, match="my.sema:1"):
        api.semaphores_to_create([], "a=1", "my.sema")


def test_all_created_is_0_and_batch_size_bounds_the_commands_in_flight() -> None:
    client = CountingClient()
    values = {f"s{i}": i for i in range(7)}
    assert api.semaphore_create_many(client, "primes", values, batch_size=3) == api.Outcome(OK)
    assert _values(client) == values
    assert client.batches == [3, 3, 1]
    assert api.semaphore_create_many(client, "primes", values, batch_size=0).code == ERROR


def test_existing_ones_fail_by_name_unless_ignored_or_overwritten() -> None:
    client = FakeStateClient()
    api.semaphore_create(client, "primes", "s2", 5)
    outcome = api.semaphore_create_many(client, "primes", {"s1": 1, "s2": 2, "s3": 3})
    assert outcome.code == ERROR and outcome.error.startswith("1 of 3 semaphore(s) not created: s2 (")
    assert "exists" in outcome.error
    assert _values(client) == {"s1": 1, "s2": 5, "s3": 3}, "the others are created all the same"
    assert api.semaphore_create_many(client, "primes", {"s2": 2, "s4": 4}, "IGNORE").code == OK
    assert _values(client)["s2"] == 5
    assert api.semaphore_create_many(client, "primes", {"s2": 2}, "OVERWRITE").code == OK
    assert _values(client)["s2"] == 2


def test_in_a_task_json_and_a_forwarded_sema_file() -> None:
    client = FakeStateClient()
    handler = StateToolHandler("unused", client_factory=lambda: client)
    assert handler.handle("semaphore create", ['{"semaphores":{"a":1,"b":2}}'], Caller()) == (0, "")
    forwarded = [f"{SEMA_FILE_NAME}=my-sema.txt", f'{SEMA_FILE_TEXT}="c":3\n\n"d":4', "--batch-size", "1"]
    assert handler.handle("semaphore create", forwarded, Caller()) == (0, "")
    assert _values(client) == {"a": 1, "b": 2, "c": 3, "d": 4}
    code, text = handler.handle("semaphore create", [f"{SEMA_FILE_NAME}=bad.txt", f'{SEMA_FILE_TEXT}="e":5\nf'],
                                Caller())
    assert code == ERROR and "bad.txt:2:" in text
    assert "e" not in _values(client), "nothing is created from a malformed file"
    code, text = handler.handle("semaphore create", ['{"a":1}'], Caller())
    assert code == ERROR and "a (" in text
    assert handler.handle("semaphore create", ['{"a":1}'], Caller(env={"CONFLICT_ACTION": "IGNORE"})) == (0, "")
    code, text = handler.handle("semaphore create", ["--sema-file", "x.txt"], Caller())
    assert code == ERROR and "unread" in text
    assert handler.handle("semaphore create", ["g", "7"], Caller()) == (0, "")
    assert handler.handle("semaphore create", ['{"h":1}', "--batch-size", "x"], Caller())[0] == ERROR


def test_leaves_of_the_colon_hierarchy() -> None:
    assert api.leaves(["a", "a:b", "a:b:c", "a:bc", "a:b-x", "z:"]) == ["a:b:c", "a:bc", "a:b-x", "z:"]
    assert api.leaves([]) == []
