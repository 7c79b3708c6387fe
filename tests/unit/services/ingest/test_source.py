"""Ingest pieces without servers: sampling by pts, resizing, backoff, error reasons, and
the health state machine against a fake Redis client (the real one: tests/integration)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import av.error
import pytest

from services.common.health import Backoff, Reason, State, StreamHealth
from services.ingest.source import Sampler, SourceError, classify, open_source, target_size


def test_sampler_keeps_frames_by_pts() -> None:
    sampler = Sampler(5.0)
    kept = [i for i in range(45) if sampler.keep(i / 15)]
    assert kept == list(range(0, 45, 3))
    every = Sampler(None)
    assert all(every.keep(i / 30) for i in range(10))


def test_sampler_restarts_when_pts_go_back_and_resyncs_after_a_gap() -> None:
    sampler = Sampler(2.0)
    assert [t for t in (0.0, 0.2, 0.5, 1.0, 1.4) if sampler.keep(t)] == [0.0, 0.5, 1.0]
    assert sampler.keep(0.0)  # a new connection starts its pts at 0 again
    assert sampler.keep(100.0) and not sampler.keep(100.1) and sampler.keep(100.5)


def test_target_size_shrinks_the_shorter_side_only() -> None:
    assert target_size(1920, 1080, 256) == (456, 256)
    assert target_size(320, 240, 256) == (320, 240)
    assert target_size(1080, 1920, 550) == (550, 978)
    assert target_size(1920, 1080, None) == (1920, 1080)


def test_backoff_is_capped_exponential_with_jitter() -> None:
    backoff = Backoff(0.5, 8.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        nominal = min(8.0, 0.5 * 2**attempt)
        assert nominal / 2 <= delay <= nominal
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next() <= 0.5


def test_errors_get_reason_codes() -> None:
    err = classify(
        av.error.InvalidDataError(1094995529, "Invalid data"), "/a.mp4", live=False, opening=True
    )
    assert err.reason == Reason.NOT_VIDEO and not err.retry and "cannot open /a.mp4" in str(err)
    refused = classify(
        ConnectionRefusedError(111, "refused"), "rtsp://u:pw@h/x", live=True, opening=True
    )
    assert refused.reason == Reason.UNREACHABLE and refused.retry and "pw" not in str(refused)
    assert (
        classify(av.error.ExitError(-1, "exit"), "rtsp://h", live=True, opening=False).reason
        == Reason.NO_FRAMES
    )


def test_missing_file_is_no_such_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path / "gone.mp4"))
    assert err.value.reason == Reason.NO_SUCH_FILE and not err.value.retry


class FakeRedis:
    """Just the calls StreamHealth makes, recording the hash it writes."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def pipeline(self) -> FakeRedis:
        return self

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.hashes.setdefault(key, {}).update(mapping)

    def expire(self, key: str, ttl: int) -> None:
        pass

    def execute(self) -> None:
        pass

    def hget(self, key: str, field: str) -> bytes | None:
        value = self.hashes.get(key, {}).get(field)
        return value.encode() if value is not None else None

    def delete(self, key: str) -> None:
        self.hashes.pop(key, None)


def test_health_writes_state_rate_and_resumes_seq() -> None:
    fake = FakeRedis()
    health = StreamHealth(fake, "cam", "w1")  # type: ignore[arg-type]
    assert health.last_seq() == -1 and fake.hashes == {}  # nothing written before
    health.set(State.CONNECTING)
    for i in range(11):
        health.frame(i, 100.0 + i * 0.2)
    health.flush(force=True)
    status = fake.hashes["segstream:status:cam"]
    assert status["state"] == "connecting" and status["seq"] == "10"
    assert abs(float(status["fps"]) - 5.0) < 1e-6 and status["worker"] == "w1"
    health.set(State.BACKOFF, Reason.UNREACHABLE, "refused")
    assert fake.hashes["segstream:status:cam"]["reason"] == "unreachable"
    assert StreamHealth(fake, "cam", "w2").last_seq() == 10  # type: ignore[arg-type]
    health.forget()
    health.set(State.RUNNING)  # a removed stream writes nothing more
    assert fake.hashes == {}


class HeldRedis(FakeRedis):
    """A FakeRedis whose pipelines apply on execute; one execute can be held until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold = False  # hold the next execute

    def pipeline(self) -> HeldPipeline:  # type: ignore[override]
        return HeldPipeline(self)


class HeldPipeline:
    def __init__(self, owner: HeldRedis) -> None:
        self.owner = owner
        self.writes: list[tuple[str, dict[str, str]]] = []

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.writes.append((key, dict(mapping)))

    def expire(self, key: str, ttl: int) -> None:
        pass

    def execute(self) -> None:
        if self.owner.hold:
            self.owner.hold = False
            self.owner.entered.set()
            assert self.owner.release.wait(10)
        for key, mapping in self.writes:
            FakeRedis.hset(self.owner, key, mapping)


def test_a_state_change_is_not_overwritten_by_an_older_write_in_flight() -> None:
    """A periodic flush that took its snapshot before an error must not land after it."""
    fake = HeldRedis()
    health = StreamHealth(fake, "cam", "w1")  # type: ignore[arg-type]
    health.set(State.RUNNING)
    health.frame(0, 100.0)  # something new to write (not yet: within a second of the last)
    fake.hold = True
    periodic = threading.Thread(target=health.flush, kwargs={"force": True})
    periodic.start()
    assert fake.entered.wait(10)  # the older snapshot (running) is being written
    failing = threading.Thread(target=health.set, args=(State.ERROR, Reason.NOT_VIDEO, "html"))
    failing.start()
    failing.join(0.2)  # a write that does not wait for the one in flight lands now
    fake.release.set()
    periodic.join(10)
    failing.join(10)
    status = fake.hashes["segstream:status:cam"]
    assert status["state"] == "error" and status["reason"] == "not-video"
