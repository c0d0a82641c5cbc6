"""Event ids: random version-4 UUIDs that a caller's seeding or a fork cannot repeat."""

import os
import random
import uuid

from scalebox_stream.events import Event
from scalebox_stream.events.envelope import random_id


def test_ids_are_version_4_uuids_and_unique():
    ids = [random_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == ids[0]


def test_seeding_the_random_module_does_not_repeat_ids():
    random.seed(7)
    first = [Event("TaskSucceeded", "a", {"attempts": 1}).event_id for _ in range(3)]
    random.seed(7)
    again = [Event("TaskSucceeded", "a", {"attempts": 1}).event_id for _ in range(3)]
    assert not set(first) & set(again)


def test_a_forked_child_draws_other_ids_than_its_parent():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, random_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child != random_id()
