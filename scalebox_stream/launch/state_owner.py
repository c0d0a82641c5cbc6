"""The state owner of a run, and the app's result it holds."""

from __future__ import annotations

from scalebox_stream.launch.children import Child, Children


def start_state_owner(children: Children, owner_id: str | None = None, name: str = "state-owner") -> Child:
    """Start `scalebox state-owner --ephemeral` as a child (its log in the children's log directory): it leaves
    the owners' group when the run stops it, so the next run's owner (or a standing one) takes over at once."""
    return children.start(name, ["state-owner", "--ephemeral", *(["--owner-id", owner_id] if owner_id else [])])


def app_result(bootstrap: str, app: str, timeout_s: float = 15.0) -> str | None:
    """The text the app was finished with (`scalebox app set-finished`), None if it has none or no owner answers
    within `timeout_s`."""
    from scalebox_stream.state import api

    outcome = api.run(bootstrap, api.app_result, app, timeout_s=timeout_s)
    return outcome.output if outcome.code == 0 else None
