"""The CLI's own error: a command that cannot run as asked, and what to do about it. Kept
apart from every other package so that raising it imports nothing."""

from __future__ import annotations


class CommandError(RuntimeError):
    """``main`` prints it (message and hint) and exits 1."""

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n  -> {hint}" if hint else message)
