"""Status hashes that come back after Redis lost them, and per-stream staleness: the age of a
running stream's newest mask event, in the status hash, the API's health and the metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from services.api.models import Health
from services.common.health import (
    Reason,
    State,
    StreamHealth,
    StreamStatus,
    staleness,
)
from services.common.metrics import PipelineMetrics, sample_value
from services.common.redis import entry_time
from tests.unit.services.ingest.test_source import FakeRedis

KEY = "segstream:status:cam"


class Clock:
    """Stands in for the ``time`` module of services.common.health."""

    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


class EventsRedis(FakeRedis):
    """FakeRedis with a stream of mask events (entry ids only) per key."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, list[bytes]] = {}

    def xrevrange(self, key: str, count: int) -> list[tuple[bytes, dict[bytes, Any]]]:
        newest = list(reversed(self.entries.get(key, [])))[:count]
        return [(entry, {b"event": b"{}"}) for entry in newest]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1_764_000_000.0)
    monkeypatch.setattr("services.common.health.time", fake)
    return fake


def test_a_terminal_status_lost_by_redis_is_written_again(clock: Clock) -> None:
    fake = EventsRedis()
    health = StreamHealth(fake, "cam", "w1", rewrite_s=10.0)  # type: ignore[arg-type]
    health.set(State.ERROR, Reason.NO_SUCH_FILE, "no such file")
    assert fake.hashes[KEY]["state"] == "error"
    fake.hashes.clear()  # Redis restarted without its data
    clock.advance(5)
    health.refresh()
    assert fake.hashes == {}  # not before rewrite_s
    clock.advance(6)
    health.refresh()
    status = StreamStatus.decode(fake.hashes[KEY])
    assert status is not None
    assert (status.state, status.reason) == ("error", "no-such-file")
    assert status.message == "no such file"


def test_finished_is_written_again_and_a_live_state_waits_for_its_next_change(clock: Clock) -> None:
    fake = EventsRedis()
    done = StreamHealth(fake, "cam", "w1", rewrite_s=10.0)  # type: ignore[arg-type]
    done.set(State.FINISHED)
    other = StreamHealth(fake, "cam2", "w1", rewrite_s=10.0)  # type: ignore[arg-type]
    other.set(State.CONNECTING)
    fake.hashes.clear()
    clock.advance(30)
    done.refresh()
    other.refresh()  # its runner writes it on its next state change or frame
    assert set(fake.hashes) == {KEY}
    assert fake.hashes[KEY]["state"] == "finished"


def test_entry_time_and_staleness() -> None:
    assert entry_time(b"1764000000123-7") == pytest.approx(1764000000.123)
    assert entry_time("5-0") == pytest.approx(0.005)
    assert staleness(State.RUNNING, 100.0, 50.0, 130.0) == 30.0
    assert staleness(State.RUNNING, None, 50.0, 130.0) == 80.0  # no event yet
    assert staleness(State.RUNNING, 140.0, 50.0, 130.0) == 0.0  # never negative
    for state in (State.BACKOFF, State.ERROR, State.FINISHED, State.STALLED):
        assert staleness(state, 100.0, 50.0, 130.0) is None
    assert staleness(State.RUNNING, None, None, 130.0) is None


def test_refresh_reads_the_newest_event_and_writes_it_with_the_status(clock: Clock) -> None:
    fake = EventsRedis()
    health = StreamHealth(fake, "cam", "w1", events_every_s=5.0)  # type: ignore[arg-type]
    health.set(State.RUNNING)
    started = clock.wall
    clock.advance(3)
    assert health.refresh() == pytest.approx(3.0)  # running, no event yet
    fake.entries["segstream:masks:cam"] = [b"1764000001500-0", b"1764000002000-1"]
    clock.advance(5)  # events_every_s after the first read: read again
    assert health.refresh() == pytest.approx(clock.wall - 1764000002.0)
    assert health.last_event_at == pytest.approx(1764000002.0)
    fake.entries["segstream:masks:cam"].append(b"1764000004000-2")
    clock.advance(1)  # within events_every_s: not read
    assert health.refresh() == pytest.approx(clock.wall - 1764000002.0)
    health.frame(2, clock.wall)
    health.flush(force=True)
    status = StreamStatus.decode(fake.hashes[KEY])
    assert status is not None and status.last_event_at == pytest.approx(1764000002.0)
    assert started < status.updated_at  # type: ignore[operator]
    health.set(State.BACKOFF, Reason.DISCONNECTED, "gone")
    assert health.refresh() is None  # no event is due from a stream that is not running


def test_the_codec_carries_last_event_at() -> None:
    status = StreamStatus(state="running", last_event_at=1764000002.25)
    assert status.encode()["last_event_at"] == "1764000002.250"
    assert StreamStatus.decode(status.encode()) == status
    older = StreamStatus(state="running").encode()  # a hash written before the field
    assert "last_event_at" not in older
    decoded = StreamStatus.decode(older)
    assert decoded is not None and decoded.last_event_at is None


def test_api_health_shows_last_event_and_staleness() -> None:
    status = StreamStatus(state="running", fps=5.0, last_event_at=1764000000.0)
    shown = Health.of(status, now=1764000095.5)
    assert shown.last_event_at == 1764000000.0
    assert shown.staleness_s == pytest.approx(95.5)
    assert Health.of(StreamStatus(state="running"), now=1.0).staleness_s is None


def test_staleness_gauge_keeps_only_running_owned_streams() -> None:
    metrics = PipelineMetrics()

    def exposed() -> str:
        return generate_latest(metrics.registry).decode()

    metrics.set_staleness({"a": 12.5, "b": 3.0, "c": None})
    text = exposed()
    name = "segstream_stream_staleness_seconds"
    assert sample_value(text, name, stream="a") == 12.5
    assert sample_value(text, name, stream="b") == 3.0
    assert 'stream="c"' not in text
    metrics.set_staleness({"a": 20.0, "b": None})  # b stopped running; a handed over next
    assert 'stream="b"' not in exposed()
    assert sample_value(exposed(), name, stream="a") == 20.0
    metrics.set_staleness({})
    assert f"{name}{{" not in exposed()


def test_event_read_never_overlaps_the_runner_closing_the_client(clock: Clock) -> None:
    """The worker's loop reads the newest event while the stream's runner may be closing the
    client's sockets (``release``); redis-py fails outside RedisError when both meet, so the
    read takes the same lock as the writes and the close."""
    seen: list[bool] = []

    class Watching(EventsRedis):
        def xrevrange(self, key: str, count: int) -> list[tuple[bytes, dict[bytes, Any]]]:
            seen.append(health._write_lock.locked())
            return super().xrevrange(key, count)

    health = StreamHealth(Watching(), "cam", "w1")  # type: ignore[arg-type]
    health.set(State.RUNNING)
    health.refresh()
    assert seen == [True]
