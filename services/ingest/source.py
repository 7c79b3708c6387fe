"""Opening and reading camera sources with PyAV, shared by the ingest worker and
``segstream run``: RTSP over TCP, open and read timeouts, FFmpeg errors turned into reason
codes (with credentials masked), pts-based sampling and resizing to the model's needs.

:func:`sample_frames` is the pure core of reading: decoded frames in, the frames the sampler
keeps out (with their pts, capture time and output size), paced to real time on request; it
knows no Kafka, Redis or threads, and its clock and wait are injectable.

Sizes are (width, height), as PyAV's ``frame.width``/``frame.height``; arrays are
(height, width, 3).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from services.common.health import Reason
from services.common.streams import is_live, redact, scheme_of


class SourceError(RuntimeError):
    """A source that cannot be opened or read: a reason code, whether trying again may help,
    and a message without credentials."""

    def __init__(self, reason: Reason, message: str, retry: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


_UNREACHABLE_ERRNOS = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.EIO,
}


def classify(exc: BaseException, source: str, *, live: bool, opening: bool) -> SourceError:
    """The SourceError of an FFmpeg/OS error raised while opening or reading ``source``."""
    text = redact(f"cannot open {source}: {exc}" if opening else f"{source}: {exc}")
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, av.error.HTTPClientError):
        return SourceError(Reason.NOT_VIDEO, text, retry=False)
    if isinstance(exc, av.error.HTTPServerError):
        return SourceError(Reason.UNREACHABLE, text, retry=True)
    if isinstance(exc, av.error.ExitError | av.error.TimeoutError):
        # PyAV's read timeout interrupts FFmpeg with AVERROR_EXIT; rw_timeout is ETIMEDOUT.
        if opening:
            return SourceError(Reason.UNREACHABLE, text, retry=live)
        return SourceError(Reason.NO_FRAMES, text, retry=live)
    if not live and isinstance(exc, av.error.FileNotFoundError | FileNotFoundError):
        return SourceError(Reason.NO_SUCH_FILE, text, retry=False)
    if isinstance(exc, av.error.InvalidDataError):
        if opening:
            return SourceError(Reason.NOT_VIDEO, text, retry=False)
        return SourceError(Reason.DISCONNECTED if live else Reason.DECODE_ERROR, text, retry=live)
    if isinstance(exc, av.error.EOFError | EOFError):
        return SourceError(Reason.DISCONNECTED if live else Reason.DECODE_ERROR, text, live)
    if isinstance(exc, OSError) and (exc.errno in _UNREACHABLE_ERRNOS or live):
        return SourceError(Reason.UNREACHABLE if opening else Reason.DISCONNECTED, text, retry=live)
    return SourceError(Reason.DECODE_ERROR, text, retry=live)


def open_source(url: str, *, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0) -> Any:
    """The PyAV container of ``url`` (a camera URL, ``file://`` URL or path) with a video
    stream; SourceError with the reason otherwise."""
    live = is_live(url)
    path = url.removeprefix("file://")
    if not live and not Path(path).is_file():
        raise SourceError(Reason.NO_SUCH_FILE, f"{redact(url)}: no such file", retry=False)
    options: dict[str, str] = {}
    scheme = scheme_of(url)
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"
    if live:
        options["rw_timeout"] = str(int(read_timeout_s * 1_000_000))
    if scheme in ("http", "https"):
        options["reconnect"] = "0"
    try:
        container = av.open(path, options=options, timeout=(open_timeout_s, read_timeout_s))
    except (av.error.FFmpegError, OSError) as exc:
        raise classify(exc, url, live=live, opening=True) from None
    if not container.streams.video:
        container.close()
        raise SourceError(Reason.NOT_VIDEO, f"{redact(url)}: no video stream", retry=False)
    return container


@dataclass
class Sampler:
    """Keeps frames ``1/fps`` apart by presentation time (every frame when fps is None); a
    jump backwards in pts (a new connection) restarts the schedule."""

    fps: float | None
    _next: float | None = None

    def keep(self, pts: float) -> bool:
        if not self.fps:
            return True
        period = 1.0 / self.fps
        if self._next is None or pts < self._next - max(1.0, 2 * period):
            self._next = pts + period  # the first frame, or pts went back (a new connection)
            return True
        if pts + 1e-6 < self._next:
            return False
        self._next = self._next + period if pts < self._next + period else pts + period
        return True

    def reset(self) -> None:
        self._next = None


def start_offset(stream: Any) -> float:
    """The stream's first presentation time in seconds (MPEG-TS starts at 1.4 s, say), so
    event pts count from the start of the video."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def frame_pts(frame: Any, index: int, rate: float, offset: float = 0.0) -> float:
    """A frame's presentation time in seconds from the stream's start (its index over the
    rate when it has none)."""
    return float(frame.time) - offset if frame.time is not None else index / rate


def target_size(width: int, height: int, side: int | None) -> tuple[int, int]:
    """(width, height) with the shorter side shrunk to ``side`` (never enlarged), even."""
    if not side or min(width, height) <= side:
        return width, height
    scale = side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def timing(stream: Any) -> tuple[float, float]:
    """(frame rate, start offset in seconds) of a PyAV video stream: what :func:`frame_pts`
    needs (30 fps when the stream does not say)."""
    return float(stream.average_rate or 30), start_offset(stream)


@dataclass(frozen=True)
class SampledFrame:
    """A decoded frame the sampler kept.

    ``pts``: seconds from the stream's start; ``captured_at``: wall-clock epoch seconds,
    strictly increasing along one :func:`sample_frames`; ``frame``: the PyAV ``VideoFrame``;
    ``size``: (width, height) that :meth:`rgb` converts to (the source's shrunk to the side).
    """

    pts: float
    captured_at: float
    frame: Any
    size: tuple[int, int]

    @property
    def source_size(self) -> tuple[int, int]:
        """(width, height) of the decoded frame."""
        return int(self.frame.width), int(self.frame.height)

    def rgb(self) -> np.ndarray:
        """The frame at ``size``: (height, width, 3) uint8 RGB, C-contiguous. Converting is
        the costly part, so it happens on the caller's thread, when the caller wants it."""
        if self.size != self.source_size:
            width, height = self.size
            rgb = self.frame.to_ndarray(format="rgb24", width=width, height=height)
        else:
            rgb = self.frame.to_ndarray(format="rgb24")
        return np.ascontiguousarray(rgb)


def sample_frames(
    frames: Iterable[Any],
    *,
    rate: float,
    offset: float = 0.0,
    fps: float | None = None,
    realtime: bool = False,
    side: int | None = None,
    captured_after: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    wait: Callable[[float], object] = time.sleep,
) -> Iterator[SampledFrame]:
    """The frames of one connection that a :class:`Sampler` at ``fps`` keeps (every frame when
    None), in decoding order.

    ``frames``: decoded PyAV frames (``container.decode(stream)``, say); ``rate`` and
    ``offset``: the stream's :func:`timing`, for :func:`frame_pts`. ``realtime``: every
    decoded frame waits until its pts, counted from the first frame's, is due on ``clock``
    (a file played as a camera); ``wait(seconds)`` does the waiting, and a true result (as
    ``threading.Event.wait`` gives once set) ends the iteration. ``side``: shrink the shorter
    side to it (:func:`target_size`). ``captured_at`` is ``wall()``, kept above
    ``captured_after`` and the previous frame's by at least 1 ms.
    """
    sampler = Sampler(fps)
    paced_from: tuple[float, float] | None = None  # (first pts, clock then)
    last_captured = captured_after
    for index, frame in enumerate(frames):
        pts = frame_pts(frame, index, rate, offset)
        if realtime:
            if paced_from is None:
                paced_from = (pts, clock())
            due = paced_from[1] + (pts - paced_from[0])
            if wait(max(0.0, due - clock())):
                return
        if sampler.keep(pts):
            last_captured = max(wall(), last_captured + 0.001)
            size = target_size(int(frame.width), int(frame.height), side)
            yield SampledFrame(pts, last_captured, frame, size)
