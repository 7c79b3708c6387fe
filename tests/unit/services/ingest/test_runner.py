"""``StreamRunner`` threads without servers: a real H.264 file written here, a producer that
records what it is given and a fake Redis client for the status hash. Covers a looping file's
pacing and the seq handed from a runner to the one that replaces it (a stream update)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.common.health import State, StreamHealth
from services.common.metrics import PipelineMetrics
from services.common.streams import StreamSpec
from services.ingest.runner import IngestOptions, StreamRunner
from tests.unit.services.ingest.clips import write_clip
from tests.unit.services.ingest.test_source import FakeRedis

FPS = 15


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.4 s: 6 frames at 15 fps; sampled at 5 fps, frames 0 and 3 of each pass."""
    return write_clip(tmp_path_factory.mktemp("runner") / "short.mp4", 6)


class Sent:
    """A produce future that has already succeeded."""

    def add_callback(self, callback: Callable[[Any], None]) -> None:
        callback(None)

    def add_errback(self, errback: Callable[[Any], None]) -> None:
        pass


class RecordingProducer:
    """Records (monotonic time, seq) of every frame produced."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, int]] = []
        self.lock = threading.Lock()

    def send(self, topic: str, key: bytes, value: bytes, headers: Any, partition: Any) -> Sent:
        seq = int(dict(headers)["seq"])
        with self.lock:
            self.sent.append((time.monotonic(), seq))
        return Sent()

    def seqs(self) -> list[int]:
        with self.lock:
            return [seq for _, seq in self.sent]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def runners() -> Iterator[list[StreamRunner]]:
    started: list[StreamRunner] = []
    yield started
    for runner in started:
        runner.stop()
    for runner in started:
        runner.join(timeout=10)


def make_runner(
    spec: StreamSpec,
    producer: RecordingProducer,
    redis: FakeRedis,
    previous: StreamRunner | None = None,
) -> StreamRunner:
    health = StreamHealth(redis, spec.id, "w1")  # type: ignore[arg-type]
    return StreamRunner(
        spec,
        0,
        producer,  # type: ignore[arg-type]
        health,
        PipelineMetrics(),
        IngestOptions(),
        "frames",
        previous,
    )


def test_a_looping_file_is_paced_without_realtime(
    short_clip: Path, runners: list[StreamRunner]
) -> None:
    """``loop`` alone plays the file at its own rate, passes included (not as fast as it
    decodes): 8 frames at 5 fps take 1.4 s."""
    spec = StreamSpec(id="loop", url=str(short_clip), model="yolact_r18_demo", fps=5, loop=True)
    assert not spec.realtime
    producer = RecordingProducer()
    runner = make_runner(spec, producer, FakeRedis())
    runners.append(runner)
    runner.start()
    wait_until(lambda: len(producer.sent) >= 8, 30, "8 frames")
    runner.stop()
    times = [at for at, _ in producer.sent[:8]]
    assert times[-1] - times[0] >= 1.2, times
    gaps = np.diff(times)
    assert gaps.min() >= 0.1, gaps  # no burst at a pass's start either
    assert producer.seqs()[:8] == list(range(8))


def test_an_updated_stream_goes_on_from_the_last_seq_sent(
    short_clip: Path, runners: list[StreamRunner]
) -> None:
    """The replacing runner continues from the seq the replaced one sent last, though the
    status hash (written at most once a second) has not caught up with it."""
    spec = StreamSpec(
        id="cam", url=str(short_clip), model="yolact_r18_demo", fps=10, loop=True, realtime=True
    )
    producer = RecordingProducer()
    redis = FakeRedis()
    first = make_runner(spec, producer, redis)
    runners.append(first)
    first.start()
    wait_until(lambda: len(producer.sent) >= 4, 30, "the first runner's frames")
    second = make_runner(spec.model_copy(update={"fps": 5.0}), producer, redis, previous=first)
    runners.append(second)
    first.stop()
    second.start()
    wait_until(lambda: len(producer.sent) >= 10, 30, "the second runner's frames")
    second.stop()
    second.join(timeout=10)
    seqs = producer.seqs()
    assert seqs == list(range(len(seqs))), seqs
    status = redis.hashes["segstream:status:cam"]
    assert status["seq"] == str(seqs[-1]) and second.health.state == State.RUNNING
