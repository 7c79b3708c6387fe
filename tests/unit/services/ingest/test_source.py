"""Ingest pieces without servers: sampling by pts, resizing, backoff, error reasons, and
the health state machine against a fake Redis client (the real one: tests/integration)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import av
import av.error
import numpy as np
import pytest
from PIL import Image

from services.common.health import Backoff, Reason, State, StreamHealth
from services.ingest.source import (
    Pacing,
    Sampler,
    SourceError,
    classify,
    open_source,
    sample_frames,
    target_size,
)
from tests.unit.services.ingest.clips import write_clip


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

    def close(self) -> None:
        pass


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


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of noise as H.264 in MP4 (64x48, 15 fps), the index (moov) written last, as PyAV
    does."""
    rng = np.random.default_rng(0)
    return write_clip(
        tmp_path_factory.mktemp("reasons") / "clip.mp4",
        15,
        frame=lambda _t: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
    )


def open_error(path: Path) -> SourceError:
    with pytest.raises(SourceError) as err:
        open_source(str(path)).close()
    return err.value


def test_a_still_image_named_mp4_is_not_video(tmp_path: Path) -> None:
    """A PNG (or JPEG) renamed .mp4 opens as a one-frame image stream: it is no video."""
    for fmt, name in (("PNG", "photo.mp4"), ("JPEG", "photo2.mp4")):
        path = tmp_path / name
        Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(path, format=fmt)
        err = open_error(path)
        assert err.reason == Reason.NOT_VIDEO and not err.retry, err
        assert name in str(err) and "image" in str(err)


def test_a_video_file_cut_before_its_index_is_a_decode_error(clip: Path, tmp_path: Path) -> None:
    """The first half of an MP4 is a video file with its index missing: truncated, not
    something else than video; a text file named .mp4 stays not-video."""
    data = clip.read_bytes()
    assert data[4:8] == b"ftyp" and data.rfind(b"moov") > len(data) // 2
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    err = open_error(cut)
    assert err.reason == Reason.DECODE_ERROR and not err.retry, err
    assert "cut.mp4" in str(err)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    err = open_error(text)
    assert err.reason == Reason.NOT_VIDEO and not err.retry, err
    open_source(str(clip)).close()  # the whole file opens


class FakeFrame:
    def __init__(self, time: float) -> None:
        self.time, self.width, self.height = time, 64, 48


def test_pacing_carries_over_to_a_looping_files_next_pass() -> None:
    """With one ``Pacing`` for every pass of a looping file, the next pass's first frame is
    due a frame period after the last one of the pass before (no burst, no drift)."""
    now = [100.0]
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        now[0] += seconds
        return False

    pacing = Pacing(clock=lambda: now[0])
    out: list[float] = []
    for _ in range(3):
        frames = [FakeFrame(t / 10) for t in range(5)]  # 0.5 s at 10 fps
        pacing.restart(0.1)
        for _frame in sample_frames(frames, rate=10, realtime=True, pacing=pacing, wait=wait):
            out.append(now[0])
    assert [t - 100.0 for t in out] == pytest.approx([i / 10 for i in range(15)])
