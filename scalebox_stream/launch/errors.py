"""The one error the launch layer raises for the user to read."""

from __future__ import annotations


class OperationError(RuntimeError):
    """An operation cannot be done as asked; the message says why (`code` is the CLI's exit code)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
