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

from services.common.destinations import DestinationPolicy, ForbiddenDestination
from services.common.health import Reason
from services.common.streams import is_live, redact, scheme_of


class SourceError(RuntimeError):
    """A source that cannot be opened or read: a reason code, whether trying again may help,
    and a message without credentials (what FFmpeg or the source said: for ``segstream run``'s
    user and the worker's debug log). ``network``: a network source's error, whose
    :attr:`status_message` is the fixed text of its reason."""

    def __init__(self, reason: Reason, message: str, retry: bool, network: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry
        self.network = network

    @property
    def status_message(self) -> str:
        """What a stream's status may show: for a network source its reason's fixed text, so
        a status never repeats what a probed target answered; the message otherwise."""
        if self.network:
            return FIXED_MESSAGES.get(self.reason, "the source failed")
        return str(self)


# The status message of a network source's failure, by reason.
FIXED_MESSAGES = {
    Reason.UNREACHABLE: "the source could not be reached",
    Reason.NOT_VIDEO: "the source answered with no video",
    Reason.DECODE_ERROR: "the source's data did not decode",
    Reason.DISCONNECTED: "the source dropped the connection",
    Reason.NO_FRAMES: "no frame within the read timeout",
    Reason.FORBIDDEN_DESTINATION: "the destination policy does not allow this source",
}


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
    if isinstance(exc, SourceError):
        return exc
    error = _classified(exc, source, live=live, opening=opening)
    error.network = live
    return error


def _classified(exc: BaseException, source: str, *, live: bool, opening: bool) -> SourceError:
    text = redact(f"cannot open {source}: {exc}" if opening else f"{source}: {exc}")
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


def checked(url: str, destinations: DestinationPolicy) -> list[tuple[str, dict[str, str]]]:
    """(what to open, FFmpeg options) pairs of ``url`` under the policy, to try in order: a
    network source's host resolved now, every address checked and the URL pinned to each
    (:meth:`DestinationPolicy.connect`), a file's real path under the file root; SourceError
    ``forbidden-destination`` (not retried) when refused, ``unreachable`` when the host does
    not resolve."""
    live = is_live(url)
    try:
        if not live:
            return [(str(destinations.file_path(url)), {})]
        return destinations.connect(url)
    except ForbiddenDestination as exc:
        raise SourceError(Reason.FORBIDDEN_DESTINATION, str(exc), False, network=live) from None
    except OSError as exc:
        raise SourceError(Reason.UNREACHABLE, redact(f"{url}: {exc}"), True, network=True) from None


# The leading bytes of video containers: a local file that starts like one but does not open
# is a damaged video (an MP4 cut before its index, which is written last), not something else.
_VIDEO_MAGIC: tuple[tuple[int, bytes], ...] = (
    *((4, box) for box in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")),  # MP4, MOV
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska, WebM
    (0, b"FLV\x01"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x30\x26\xb2\x75"),  # ASF, WMV
)


def _video_container(path: str) -> bool:
    """Whether the file at ``path`` starts as a video container does (its magic bytes)."""
    try:
        with open(path, "rb") as file:
            head = file.read(200)
    except OSError:
        return False
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if len(head) > 188 and head[0] == head[188] == 0x47:  # MPEG-TS sync bytes
        return True
    return any(head[at : at + len(magic)] == magic for at, magic in _VIDEO_MAGIC)


def _still_image(container: Any) -> bool:
    """Whether FFmpeg opened a picture (PNG, JPEG, ... read by an image demuxer, or a GIF of
    one frame): one frame and no video, whatever the file's name says."""
    name = str(container.format.name)
    if name.startswith("image2") or name.endswith("_pipe"):
        return True
    return name == "gif" and int(container.streams.video[0].frames or 0) <= 1


def open_source(
    url: str,
    *,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
    destinations: DestinationPolicy | None = None,
) -> Any:
    """The PyAV container of ``url`` (a camera URL, ``file://`` URL or path) with a video
    stream; SourceError with the reason otherwise. ``destinations``: the policy to open it
    under (:func:`checked`; the ingest worker's), None for none (``segstream run``, whose
    user points it at the source)."""
    if destinations is None:
        return _open(url, {}, open_timeout_s, read_timeout_s)
    candidates = checked(url, destinations)
    for index, (checked_url, options) in enumerate(candidates):
        try:
            return _open(checked_url, options, open_timeout_s, read_timeout_s)
        except SourceError as exc:  # the next address, when this one did not answer
            if exc.reason != Reason.UNREACHABLE or index == len(candidates) - 1:
                raise
    raise AssertionError("checked() gives at least one candidate")


def _open(url: str, options: dict[str, str], open_timeout_s: float, read_timeout_s: float) -> Any:
    live, options = is_live(url), dict(options)
    path = url.removeprefix("file://")
    if not live and not Path(path).is_file():
        raise SourceError(Reason.NO_SUCH_FILE, f"{redact(url)}: no such file", retry=False)
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
        error = classify(exc, url, live=live, opening=True)
        if error.reason == Reason.NOT_VIDEO and not live and _video_container(path):
            error = SourceError(
                Reason.DECODE_ERROR,
                f"{error} (a video file that does not open: truncated before its index?)",
                retry=False,
            )
        raise error from None
    if not container.streams.video:
        container.close()
        raise SourceError(Reason.NOT_VIDEO, f"{redact(url)}: no video stream", False, live)
    if _still_image(container):
        container.close()
        raise SourceError(Reason.NOT_VIDEO, f"{redact(url)}: a still image, not video", False)
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


class Pacing:
    """Real-time pacing of one stream's decoded frames, on ``clock`` (monotonic seconds): a
    frame is due when the clock has moved from the first frame's due time as far as its pts
    has from the first frame's. A looping file keeps one for all its passes and calls
    :meth:`restart` before each: the pass's pts start again at 0, and its first frame is due
    ``gap`` (a frame period) after the previous pass's last, or at once when that is past."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._origin: tuple[float, float] | None = None  # (a pts, the clock time it is due)
        self._last_due: float | None = None
        self._start_at: float | None = None

    def restart(self, gap: float = 0.0) -> None:
        """A new pass (connection) starts: its first frame is due ``gap`` seconds after the
        last frame's due time."""
        self._origin = None
        self._start_at = None if self._last_due is None else self._last_due + gap

    def due(self, pts: float) -> float:
        """The clock time at which the frame at ``pts`` (seconds) is due."""
        if self._origin is None:
            now = self.clock()
            start = now if self._start_at is None else max(now, self._start_at)
            self._origin = (pts, start)
        self._last_due = self._origin[1] + (pts - self._origin[0])
        return self._last_due


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
    pacing: Pacing | None = None,
) -> Iterator[SampledFrame]:
    """The frames of one connection that a :class:`Sampler` at ``fps`` keeps (every frame when
    None), in decoding order.

    ``frames``: decoded PyAV frames (``container.decode(stream)``, say); ``rate`` and
    ``offset``: the stream's :func:`timing`, for :func:`frame_pts`. ``realtime``: every
    decoded frame waits until its pts, counted from the first frame's, is due on ``clock``
    (a file played as a camera); ``wait(seconds)`` does the waiting, and a true result (as
    ``threading.Event.wait`` gives once set) ends the iteration; ``pacing``: the
    :class:`Pacing` to keep across calls (a looping file's passes; its clock is used), a new
    one on ``clock`` when None. ``side``: shrink the shorter side to it
    (:func:`target_size`). ``captured_at`` is ``wall()``, kept above ``captured_after`` and
    the previous frame's by at least 1 ms.
    """
    sampler = Sampler(fps)
    if realtime and pacing is None:
        pacing = Pacing(clock)
    last_captured = captured_after
    for index, frame in enumerate(frames):
        pts = frame_pts(frame, index, rate, offset)
        if realtime and pacing is not None:
            due = pacing.due(pts)
            if wait(max(0.0, due - pacing.clock())):
                return
        if sampler.keep(pts):
            last_captured = max(wall(), last_captured + 0.001)
            size = target_size(int(frame.width), int(frame.height), side)
            yield SampledFrame(pts, last_captured, frame, size)
