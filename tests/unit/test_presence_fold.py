"""The presence fold: which hosts have a live agent for a module."""

from scalebox_stream.events import Event
from scalebox_stream.kafka.presence import PRESENCE_TTL_S, Presence, hosts_served, is_live, presence_of

NOW = 1_800_000_000.0


def test_a_lifecycle_event_states_app_module_host_state_and_time():
    event = Event("AgentLifecycle", "app", {"agent": "h1-1-x", "state": "started", "slots": 1, "executor": "process"},
                  module="m", host="h1", occurred_at=int(NOW * 1e6))
    assert presence_of(event) == Presence("app", "m", "h1", "started", NOW)


def test_live_until_stopped_or_silent_past_the_ttl():
    assert is_live(Presence("a", "m", "h", "started", NOW), NOW)
    assert is_live(Presence("a", "m", "h", "heartbeat", NOW - PRESENCE_TTL_S), NOW)
    assert not is_live(Presence("a", "m", "h", "heartbeat", NOW - PRESENCE_TTL_S - 0.1), NOW)
    assert not is_live(Presence("a", "m", "h", "stopped", NOW), NOW)


def test_hosts_served_counts_live_agents_of_that_app_and_module_only():
    board = {
        "h1-1": Presence("a", "m", "h1", "heartbeat", NOW - 1),
        "h2-1": Presence("a", "m", "h2", "stopped", NOW - 1),
        "h2-2": Presence("a", "m", "h2", "started", NOW - 60),  # killed a minute ago
        "h3-1": Presence("a", "other", "h3", "started", NOW),
        "h4-1": Presence("b", "m", "h4", "started", NOW),
        "h5-1": Presence("a", "m", "h5", "started", NOW),
    }
    assert hosts_served(board, "a", "m", NOW) == {"h1", "h5"}
    assert hosts_served(board, "a", "nothing", NOW) == set()
