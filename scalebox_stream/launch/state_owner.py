"""Starting a state owner next to the projector and agents."""

from __future__ import annotations

from scalebox_stream.launch.children import Child, Children


def start_state_owner(children: Children, owner_id: str | None = None, name: str = "state-owner") -> Child:
    """Start `scalebox state-owner` as a child (its log in the children's log directory)."""
    return children.start(name, ["state-owner", *(["--owner-id", owner_id] if owner_id else [])])
