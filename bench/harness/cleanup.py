"""Undoing what a benchmark run started, whatever ends it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType


@dataclass
class Cleanup:
    """What the run started, undone in reverse order whatever happens."""

    steps: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def add(self, name: str, step: Callable[[], object]) -> None:
        self.steps.append((name, step))

    def run(self) -> None:
        while self.steps:
            name, step = self.steps.pop()
            try:
                step()
            except Exception as exc:
                print(f"cleanup: {name} failed: {exc}", file=sys.stderr)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def raise_on_signals() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so ``Cleanup`` runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
