"""Child processes with pid files that survive the CLI invocation that started them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.infra.errors import InfraError


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (host, port) or the port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after its ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has finished; only its exit status is left
        return None
    return int(fields[19])


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_ticks: int
    argv: tuple[str, ...]

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks


class ManagedProcess:
    """One server process owned through ``<run_dir>/<name>.pid``."""

    def __init__(self, name: str, run_dir: Path, log_dir: Path) -> None:
        self.name = name
        self.pid_file = run_dir / f"{name}.pid"
        self.log_file = log_dir / f"{name}.log"

    def record(self) -> PidRecord | None:
        try:
            data = json.loads(self.pid_file.read_text())
            return PidRecord(int(data["pid"]), int(data["start_ticks"]), tuple(data["argv"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def running(self) -> bool:
        rec = self.record()
        return rec is not None and rec.alive()

    def start(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> PidRecord:
        """Start ``argv`` in a new session, its output appended to the log file."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    close_fds=True,
                )
            except OSError as exc:
                raise InfraError(f"{self.name}: cannot run {argv[0]}: {exc}") from exc
        ticks = _start_ticks(proc.pid)
        rec = PidRecord(proc.pid, ticks if ticks is not None else -1, tuple(argv))
        self.pid_file.write_text(
            json.dumps({"pid": rec.pid, "start_ticks": rec.start_ticks, "argv": list(rec.argv)})
        )
        self._popen = proc  # keeps the child reaped while this process lives
        return rec

    def exited(self) -> bool:
        """True once a process this object started has ended."""
        proc = getattr(self, "_popen", None)
        return proc is not None and proc.poll() is not None

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the recorded process and its process group; True if one was running."""
        rec = self.record()
        if rec is None:
            return False
        was_running = rec.alive()
        if was_running:
            _signal_group(rec.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while rec.alive() and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.1)
            if rec.alive():
                _signal_group(rec.pid, signal.SIGKILL)
                while rec.alive():
                    self._reap()
                    time.sleep(0.05)
        self._reap()
        self.pid_file.unlink(missing_ok=True)
        return was_running

    def _reap(self) -> None:
        proc = getattr(self, "_popen", None)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The process leads its own session (start_new_session), so its group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
    interval: float = 0.25,
) -> None:
    """Poll ``check`` until it is true; fail early when ``process`` has died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and (process.exited() or not process.running()):
            raise InfraError(
                f"{process.name} exited while starting; last lines of {process.log_file}:\n"
                + process.log_tail(),
                f"read {process.log_file} for the cause",
            )
        time.sleep(interval)
    detail = f"; see {process.log_file}" if process is not None else ""
    raise InfraError(f"{what} not ready after {timeout:.0f}s{detail}")
