"""Tests of the test harness, not of segstream: the camera-stream sources the integration
tier's tests use (``sources.py``: the RTSP camera, the HLS server, a truncated file), read
with PyAV as the service reads. They need no Kafka or Redis; marked ``harness``, so
``-m "not harness"`` leaves them out and ``-m harness`` runs them alone.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from segcore.data import synthetic
from tests.integration.sources import HlsServer, RtspServer, truncated_copy

SIZE = (240, 320)  # (H, W)
FPS = 15
FRAMES = 40
RTSP_OPTIONS = {"rtsp_transport": "tcp", "timeout": "5000000"}  # socket timeout, microseconds

pytestmark = pytest.mark.harness


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sources") / "camera.mp4"
    synthetic.write_video(path, 7, FRAMES, SIZE, fps=FPS)
    return path


@pytest.fixture(scope="module")
def source_frames(video: Path) -> np.ndarray:
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames).astype(np.int16)


def which_frame(frame: av.VideoFrame, source_frames: np.ndarray) -> int:
    """The index of the source frame that ``frame`` shows (asserting it shows one)."""
    errors = np.abs(source_frames - frame.to_ndarray(format="rgb24")).mean(axis=(1, 2, 3))
    best = int(errors.argmin())
    assert errors[best] < 3.0, f"a frame unlike the video's (mean error {errors[best]:.1f})"
    return best


@pytest.fixture(scope="module")
def rtsp(video: Path) -> Iterator[RtspServer]:
    with RtspServer(video) as server:
        yield server


def count_frames(url: str, **options: str) -> int:
    with av.open(url, options=options, timeout=10) as container:
        return sum(1 for _ in container.decode(video=0))


def read_frames(url: str, count: int) -> list[av.VideoFrame]:
    frames: list[av.VideoFrame] = []
    with av.open(url, options=RTSP_OPTIONS, timeout=10) as container:
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) == count:
                break
    return frames


def test_rtsp_is_a_live_camera_of_the_video(rtsp: RtspServer, source_frames: np.ndarray) -> None:
    frames = read_frames(rtsp.url, 30)
    assert len(frames) == 30
    assert {(f.height, f.width) for f in frames} == {SIZE}
    for frame in frames:
        which_frame(frame, source_frames)


def test_rtsp_loops_in_real_time(rtsp: RtspServer, source_frames: np.ndarray) -> None:
    with av.open(rtsp.url, options=RTSP_OPTIONS, timeout=10) as container:
        decoded = container.decode(video=0)
        for _ in range(FPS):  # the client buffers while it probes the stream: skip that burst
            next(decoded)
        began = time.monotonic()
        frames = [next(decoded) for _ in range(2 * FRAMES)]  # twice through the video
        elapsed = time.monotonic() - began
    assert 0.7 * 2 * FRAMES / FPS < elapsed < 2 * 2 * FRAMES / FPS
    shown = [which_frame(frame, source_frames) for frame in frames]
    assert set(shown) == set(range(FRAMES))
    steps = [(b - a) % FRAMES for a, b in itertools.pairwise(shown)]
    assert steps.count(1) >= 0.9 * len(steps), steps  # in order, the first after the last


def test_rtsp_serves_several_clients(rtsp: RtspServer) -> None:
    first = av.open(rtsp.url, options=RTSP_OPTIONS, timeout=10)
    second = av.open(rtsp.url, options=RTSP_OPTIONS, timeout=10)
    try:
        a, b = first.decode(video=0), second.decode(video=0)
        for _ in range(20):
            assert (next(a).width, next(b).width) == (SIZE[1], SIZE[1])
    finally:
        first.close()
        second.close()
    assert len(read_frames(rtsp.url, 10)) == 10  # and one more after they left


def test_rtsp_outage_drops_clients_and_recovers_on_the_same_url(video: Path) -> None:
    with RtspServer(video) as server:
        url = server.url
        container = av.open(url, options=RTSP_OPTIONS, timeout=10)
        try:
            decoded = container.decode(video=0)
            for _ in range(5):
                next(decoded)
            server.stop()
            began = time.monotonic()
            # The killed server closes the connection: what was buffered, then the end of
            # the stream, well before the 5 s socket timeout would end it.
            with pytest.raises(StopIteration):
                for _ in range(1000):
                    next(decoded)
            assert time.monotonic() - began < 2.5
        finally:
            container.close()
        with pytest.raises(av.error.ConnectionRefusedError):
            av.open(url, options=RTSP_OPTIONS, timeout=5)
        server.start()
        assert server.url == url
        frames = read_frames(url, 30)
        assert len(frames) == 30
        assert (frames[0].height, frames[0].width) == SIZE


def test_rtsp_start_reports_a_server_that_dies(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    with pytest.raises(RuntimeError, match="cannot play"):
        RtspServer(broken, startup_timeout=20).start()


def test_hls_plays_the_whole_video_then_ends(video: Path, tmp_path: Path) -> None:
    with HlsServer(video, tmp_path / "hls") as server:
        assert server.url.endswith("/index.m3u8")
        playlist = (tmp_path / "hls" / "index.m3u8").read_text()
        assert playlist.count(".ts") == -(-FRAMES // FPS)  # one-second segments
        assert "#EXT-X-ENDLIST" in playlist
        assert count_frames(server.url) == count_frames(str(video)) == FRAMES


def test_hls_server_page_that_is_not_video(video: Path) -> None:
    with HlsServer(video) as server, pytest.raises(av.FFmpegError):
        av.open(server.not_video_url, timeout=10)


def test_truncated_video_does_not_open(video: Path, tmp_path: Path) -> None:
    damaged = truncated_copy(video, tmp_path / "half.mp4")
    assert damaged.stat().st_size == video.stat().st_size // 2
    # PyAV's MP4 muxer writes the index (moov) last: the first half has none
    with pytest.raises(av.InvalidDataError):
        count_frames(str(damaged))
