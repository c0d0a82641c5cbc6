"""When to say that a step a process waits on (a start-up step: topics, the transactional producer, ...) is taking
long: nothing for the first few seconds, then a line naming what it waits for and the likely cause, then
reminders further and further apart, and one line when it is done if anything was said. Pure: the caller asks
with its clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from scalebox_stream.policy.kafka_log import span

FIRST_S = 5.0
"""A step quicker than this is not mentioned."""
SECOND_GAP_S = 25.0
"""The first reminder comes this long after the first line (30 s into the step); each next one twice as long after."""
MAX_GAP_S = 120.0
"""The longest gap between two reminders."""


@dataclass
class SlowStep:
    """One step: `what` it is doing (`making the app's topics`), and `hint`, the likely cause of a long wait and
    what to do (said once)."""

    what: str
    started: float
    hint: str = ""
    first_s: float = FIRST_S
    max_gap_s: float = MAX_GAP_S
    said: int = 0
    _next: float = field(init=False)
    _gap: float = field(init=False)

    def __post_init__(self) -> None:
        self._next, self._gap = self.started + self.first_s, self.first_s

    def next_at(self) -> float:
        """When `due` will next have something to say."""
        return self._next

    def due(self, now: float) -> str | None:
        """The line to log at `now`, if one is due."""
        if now < self._next:
            return None
        self.said += 1
        self._gap = min(2 * self._gap if self.said > 1 else SECOND_GAP_S, self.max_gap_s)
        self._next = now + self._gap
        line = f"start-up: still {self.what} after {span(now - self.started)}"
        return f"{line} ({self.hint})" if self.hint and self.said == 1 else line

    def done(self, now: float) -> str | None:
        """The line to log when the step is done: only if it was said to be slow."""
        return f"start-up: done {self.what} after {span(now - self.started)}" if self.said else None
