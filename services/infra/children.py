"""``segstream`` commands as child processes of a tool: the demo's API and workers, the
benchmarks' and the integration tests' workers.

A :class:`Child` runs ``python -m services.cli ARGS`` (the ``segstream`` command of this
interpreter) in a session of its own, so a Ctrl-C in the terminal reaches only the tool, which
decides how its children stop. Its environment is the tool's with ``settings.env()`` on top
(the child's ``Settings()`` equals ``settings``) and ``SEGSTREAM_METRICS_PORT`` set to its own
/metrics port; stdout and stderr go to one log file. Unlike the servers of ``process.py`` a
child has no pid file: it lives as long as the tool that holds it. ``stop`` sends SIGTERM to
its process group once (a second one makes uvicorn quit without its shutdown), waits, then
sends SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from services.common.settings import Settings
from services.infra.errors import InfraError
from services.infra.process import free_port

SEGSTREAM = (sys.executable, "-m", "services.cli")


class Child:
    """One child process.

    ``args`` follow the command (``["segment", "--model", "yolact_r18_demo"]``); ``env`` is
    added last (``OMP_NUM_THREADS``, ``SEGSTREAM_LOG_LEVEL``); ``metrics_port`` is a free port
    when None; ``append`` keeps what the log file holds; ``command`` replaces ``segstream``
    (tests of this module run plain Python).
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        settings: Settings,
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        metrics_port: int | None = None,
        append: bool = False,
        command: Sequence[str] = SEGSTREAM,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.host = settings.host
        self.metrics_port = free_port(settings.host) if metrics_port is None else metrics_port
        child_env = {
            **os.environ,
            **settings.env(),
            "SEGSTREAM_METRICS_PORT": str(self.metrics_port),
            **(env or {}),
        }
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab" if append else "wb") as log:
            self.process = subprocess.Popen(
                [*command, *args],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._terminated = False

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def returncode(self) -> int | None:
        """The exit status once it has ended (negative: the signal that ended it)."""
        return self.process.poll()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        """Everything it has written so far ("" before its first line)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def log_records(self) -> Iterator[dict[str, Any]]:
        """Its JSON log lines (``services.common.logs``), decoded; other lines are skipped."""
        for line in self.log().splitlines():
            if line.startswith("{"):
                yield json.loads(line)

    def check(self) -> None:
        """Raise ``InfraError`` with the end of its log when it has exited."""
        code = self.returncode
        if code is not None:
            raise InfraError(
                f"{self.name} exited with {code}; last lines of {self.log_path}:\n{self.tail()}",
                f"read {self.log_path} for the cause",
            )

    def wait_log(self, text: str, timeout: float, interval: float = 0.2) -> None:
        """Until ``text`` appears in its log; ``InfraError`` when it exits or time is up."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            self.check()
            if time.monotonic() > deadline:
                raise InfraError(
                    f"{self.name} did not log {text!r} in {timeout:.0f} s:\n{self.tail()}",
                    f"read {self.log_path} for the cause",
                )
            time.sleep(interval)

    def metrics(self, timeout: float = 10.0) -> str:
        """Its /metrics exposition (``services.common.metrics.sample_value`` reads it)."""
        url = f"http://{self.host}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode())

    def terminate(self) -> None:
        """SIGTERM to its process group, once; returns at once."""
        if not self._terminated and self.alive():
            self._terminated = True
            _signal_group(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to its process group (kill -9), then reap it."""
        if self.alive():
            _signal_group(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, up to ``timeout`` seconds for it to exit, then SIGKILL; its exit status."""
        self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return int(self.process.returncode)


def stop_all(children: Iterable[Child], timeout: float = 20.0) -> None:
    """Stop ``children`` together: SIGTERM to each, then SIGKILL to those still running after
    ``timeout`` seconds in all."""
    running = list(children)
    for child in running:
        child.terminate()
    deadline = time.monotonic() + timeout
    for child in running:
        child.stop(timeout=max(0.1, deadline - time.monotonic()))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The child leads its own session (start_new_session), so its group id is its pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
