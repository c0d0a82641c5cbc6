"""The state owner of a run, and the app's result it holds."""

from __future__ import annotations

import threading

from scalebox_stream.launch.children import Child, Children
from scalebox_stream.state.api import connect
from scalebox_stream.state.model import APP, APP_RESULT, OK


def start_state_owner(children: Children, owner_id: str | None = None, name: str = "state-owner") -> Child:
    """Start `scalebox state-owner --ephemeral` as a child (its log in the children's log directory): it leaves
    the owners' group when the run stops it, so the next run's owner (or a standing one) takes over at once."""
    return children.start(name, ["state-owner", "--ephemeral", *(["--owner-id", owner_id] if owner_id else [])])


class ResultWatch:
    """The result text an app is finished with during a run (`scalebox app set-finished`).

    An app's state outlives its runs, and a run of the same app file has the same name: the result's version is
    read when the run starts (in the background, while the owner comes up) and a result counts only if its
    version moved since."""

    def __init__(self, bootstrap: str, app: str, timeout_s: float = 30.0) -> None:
        self.bootstrap, self.app, self.timeout_s = bootstrap, app, timeout_s
        self._before: tuple[bool, int | None] = (False, None)
        """(read, version): whether the version at the start is known, and what it was (None: no result)."""
        self._thread = threading.Thread(target=self._read_before, name="result-watch", daemon=True)
        self._thread.start()

    def _get(self) -> tuple[int | None, str | None]:
        """(version, text) of the app's result now; (None, None) if it has none."""
        with connect(self.bootstrap, timeout_s=self.timeout_s) as client:
            reply = client.call(client.command("get", APP, self.app, APP_RESULT))
        return (reply.version, str(reply.value)) if reply.code == OK else (None, None)

    def _read_before(self) -> None:
        try:
            self._before = (True, self._get()[0])
        except Exception:  # no owner in time, no broker: the end decides alone
            self._before = (False, None)

    def text(self) -> str | None:
        """The result set since the run started, None if none was (or no owner answers)."""
        self._thread.join(self.timeout_s)
        try:
            version, text = self._get()
        except Exception:
            return None
        known, before = self._before
        if text is None or (known and version is not None and version == before):
            return None
        return text  # (an owner of an older version gives no version: its result is taken as it is)
