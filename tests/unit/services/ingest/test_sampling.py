"""``sample_frames`` on its own: a real H.264 file written with PyAV here, decoded, sampled,
sized and paced, with a fake clock so pacing costs no real time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.ingest.source import SampledFrame, open_source, sample_frames, timing
from tests.unit.services.ingest.clips import write_clip

FPS = 15
FRAMES = 30
WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 15 fps, 64x48; frame t is a flat grey of level 8 * t."""
    return write_clip(
        tmp_path_factory.mktemp("sampling") / "clip.mp4",
        FRAMES,
        fps=FPS,
        size=(WIDTH, HEIGHT),
        options={"crf": "10", "preset": "veryfast"},
    )


def sampled(video: Path, **kwargs: Any) -> list[SampledFrame]:
    container = open_source(str(video))
    try:
        stream = container.streams.video[0]
        rate, offset = timing(stream)
        assert rate == FPS
        return list(sample_frames(container.decode(stream), rate=rate, offset=offset, **kwargs))
    finally:
        container.close()


class FakeTime:
    """A monotonic clock that only moves when waited on (or told to)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        self.stop_after: int | None = None

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return self.stop_after is not None and len(self.waits) >= self.stop_after


def test_samples_to_the_fps_by_pts_in_order(video: Path) -> None:
    frames = sampled(video, fps=5.0)
    # 30 frames at 15 fps sampled at 5 fps: frames 0, 3, 6, ... 27.
    assert [round(f.pts * FPS) for f in frames] == list(range(0, FRAMES, 3))
    assert all(a.pts < b.pts for a, b in itertools.pairwise(frames))
    grey = [int(f.rgb().mean()) for f in frames]
    assert all(abs(level - 8 * t) <= 3 for level, t in zip(grey, range(0, FRAMES, 3), strict=True))
    every = sampled(video)
    assert [round(f.pts * FPS) for f in every] == list(range(FRAMES))


def test_frames_shrink_to_the_side_and_keep_their_source_size(video: Path) -> None:
    frames = sampled(video, fps=5.0, side=24)
    first = frames[0]
    assert first.size == (32, 24) and first.source_size == (WIDTH, HEIGHT)
    rgb = first.rgb()
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert sampled(video, fps=5.0, side=480)[0].rgb().shape == (HEIGHT, WIDTH, 3)


def test_capture_times_increase_from_the_one_given(video: Path) -> None:
    frames = sampled(video, fps=5.0, wall=lambda: 1000.0, captured_after=1000.5)
    assert frames[0].captured_at == pytest.approx(1000.501)
    steps = [b.captured_at - a.captured_at for a, b in itertools.pairwise(frames)]
    assert steps == pytest.approx([0.001] * (len(frames) - 1))


def test_realtime_waits_until_each_frame_is_due(video: Path) -> None:
    fake = FakeTime()
    due: list[tuple[float, float]] = []
    container = open_source(str(video))
    try:
        stream = container.streams.video[0]
        rate, offset = timing(stream)
        frames: Iterator[SampledFrame] = sample_frames(
            container.decode(stream),
            rate=rate,
            offset=offset,
            fps=5.0,
            realtime=True,
            clock=fake.clock,
            wait=fake.wait,
        )
        for frame in frames:
            due.append((frame.pts, fake.now))
            fake.now += 0.05  # the consumer's own time counts towards the next frame's wait
    finally:
        container.close()
    # Every decoded frame is paced, sampled or not; each sampled one leaves at its pts.
    assert len(fake.waits) == FRAMES and len(due) == FRAMES // 3
    assert [at - 100.0 for _, at in due] == pytest.approx([pts for pts, _ in due], abs=1e-6)
    assert fake.waits[0] == 0.0
    assert fake.waits[1] == pytest.approx(1 / FPS - 0.05)
    assert fake.waits[2] == pytest.approx(1 / FPS)


def test_realtime_stops_when_the_wait_says_so(video: Path) -> None:
    fake = FakeTime()
    fake.stop_after = 5  # the wait of the fifth frame returns true: a stop was asked for
    frames = sampled(video, realtime=True, clock=fake.clock, wait=fake.wait)
    assert [round(f.pts * FPS) for f in frames] == [0, 1, 2, 3]
    assert len(fake.waits) == 5
