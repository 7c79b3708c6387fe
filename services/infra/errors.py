"""The one error type of the infrastructure tools: what went wrong, and what to do."""

from __future__ import annotations


class InfraError(RuntimeError):
    """A local server could not be prepared, started or reached.

    ``hint`` tells the operator what to do about it; ``str()`` carries both.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  -> {hint}" if hint else message)
