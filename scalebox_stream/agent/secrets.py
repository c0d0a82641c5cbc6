"""A module's secrets, read by the agent for each attempt, and their removal from what the attempt reports.

The app file names where a secret comes from (a file on the agent's host, or a variable of the agent's
environment), never its value. The agent reads each one when an attempt starts (a rotated file is seen by
the next attempt) and gives it to the attempt as an environment variable. No event carries an attempt's
environment; the texts an attempt reports (stdout, stderr, custom output, message, error) have every exact
occurrence of a secret value replaced by `[secret]` (`REDACTED`) before they go into an event.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from scalebox_stream.spec.limits import MAX_SECRET_BYTES
from scalebox_stream.spec.lockdown import SecretSource

REDACTED = "[secret]"


class SecretError(Exception):
    """A secret that cannot be read (the message names the secret and its source, never a value)."""


def read_secrets(secrets: Mapping[str, SecretSource], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """NAME -> value for every secret; a trailing newline of a file is dropped."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for name, source in secrets.items():
        if source.env is not None:
            if source.env not in environ:
                raise SecretError(f"secret {name}: the agent's environment has no variable {source.env}")
            value = environ[source.env]
        else:
            value = _read_file(name, Path(str(source.file)))
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise SecretError(f"secret {name}: longer than {MAX_SECRET_BYTES} bytes (MAX_SECRET_BYTES)")
        if "\0" in value:
            raise SecretError(f"secret {name}: contains a NUL byte (an environment variable cannot)")
        values[name] = value
    return values


def _read_file(name: str, path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 2)
    except OSError as e:
        raise SecretError(f"secret {name}: cannot read {path}: {e.strerror or type(e).__name__}") from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise SecretError(f"secret {name}: {path} is not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text


class Redactor:
    """Replaces every secret value seen so far by `REDACTED` (longest first, so one value inside another
    leaves nothing behind). Values are only ever added: a rotated secret's old value stays redacted."""

    def __init__(self) -> None:
        self._values: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        new = set(self._values) | {v for v in values if v}
        if len(new) != len(self._values):
            self._values = tuple(sorted(new, key=len, reverse=True))  # one assignment: readers see old or new

    def __bool__(self) -> bool:
        return bool(self._values)

    def text(self, text: str | None) -> str | None:
        if text is None or not self._values:
            return text
        for value in self._values:
            text = text.replace(value, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        if not data or not self._values:
            return data
        for value in self._values:
            data = data.replace(value.encode(), REDACTED.encode())
        return data
