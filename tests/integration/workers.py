"""Worker processes for the data-path tests: ``segstream ingest`` and ``segstream segment``
started as real processes (so a test can kill -9 them) against the session's servers, with
their own metrics port and log file, plus helpers to wait for and read what they publish."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis

from services.common.events import MaskEvent, decode_event
from services.common.metrics import sample_value
from services.common.redis import masks_key, status_key
from services.common.settings import Settings
from services.infra.children import Child

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


class Worker(Child):
    """``segstream ARGS`` logging at INFO to ``<log_dir>/<name>.log``: ``kill()`` is kill -9,
    ``stop()`` SIGTERM, a wait, then kill -9; ``metrics()`` its /metrics text, read with
    ``services.common.metrics.sample_value``."""

    def __init__(self, settings: Settings, args: list[str], log_dir: Path, name: str) -> None:
        super().__init__(
            name, args, settings, log_dir / f"{name}.log", env={"SEGSTREAM_LOG_LEVEL": "INFO"}
        )


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


def settled(worker: Worker) -> str | None:
    """The segment worker's metrics once every frame it consumed is published or known as a
    duplicate (no batch in flight); None before."""
    text = worker.metrics()
    consumed = sample_value(text, "segstream_frames_consumed_total")
    done = sample_value(text, "segstream_events_published_total") + sample_value(
        text, "segstream_duplicates_total"
    )
    return text if consumed > 0 and done == consumed else None
