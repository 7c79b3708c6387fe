"""Worker processes for the data-path tests: ``segstream ingest`` and ``segstream segment``
started as real processes (so a test can kill -9 them) against the session's servers, with
their own metrics port and log file, plus helpers to wait for and read what they publish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis

from services.common.events import MaskEvent, decode_event
from services.common.redis import masks_key, status_key
from services.common.settings import Settings
from services.infra.process import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a child process's Settings() equal ``settings``."""
    return {**os.environ, **settings.env()}


class Worker:
    """One worker process; ``kill()`` is kill -9, ``stop()`` a SIGTERM and a wait."""

    def __init__(self, settings: Settings, args: list[str], log_dir: Path, name: str) -> None:
        self.name = name
        self.metrics_port = free_port()
        env = settings_env(settings)
        env["SEGSTREAM_METRICS_PORT"] = str(self.metrics_port)
        env["SEGSTREAM_LOG_LEVEL"] = "INFO"
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return int(self.process.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> Iterator[dict[str, Any]]:
        for line in self.log().splitlines():
            if line.startswith("{"):
                yield json.loads(line)

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            return str(r.read().decode())


def wait_for(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def events(client: redis.Redis, stream_id: str) -> list[tuple[str, MaskEvent]]:
    """(entry id, event) of a stream's mask events in Redis, in stream order."""
    return [
        (entry.decode(), decode_event(fields[b"event"]))
        for entry, fields in client.xrange(masks_key(stream_id))
    ]


def status(client: redis.Redis, stream_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(status_key(stream_id)).items()}


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def wait_events(
    client: redis.Redis, stream_id: str, count: int, timeout: float
) -> list[tuple[str, MaskEvent]]:
    """The stream's events once there are at least ``count``."""

    def enough() -> list[tuple[str, MaskEvent]] | None:
        got = events(client, stream_id)
        return got if len(got) >= count else None

    return wait_for(enough, timeout, f"{count} events of {stream_id}")


def wait_state(
    client: redis.Redis, stream_id: str, states: set[str], timeout: float
) -> dict[str, str]:
    """The stream's status once its state is one of ``states``."""

    def reached() -> dict[str, str] | None:
        got = status(client, stream_id)
        return got if got.get("state") in states else None

    return wait_for(reached, timeout, f"{stream_id} in state {sorted(states)}")
