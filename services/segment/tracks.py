"""Identities and analytics of a worker's streams, kept in Redis with the events they produced.

Each stream has one tracking document, ``segstream:tracks:<stream id>`` (see
:func:`services.common.redis.tracks_key`)::

    {"v": 1, "last": "<entry id of the frame it follows>", "tracker": Tracker.state(),
     "analytics": Analytics.state(), "counts": Analytics.counts(),
     "clock": [pts0, t0, pts, captured_at]}   # clock: streams timed by their pts only

Frames are tracked at their capture time, except those of a stream timed by its media (a
file not played in real time, whose capture times are when it was decoded: bursts, then
waits for the model), tracked on their pts from the first frame's capture time (:class:`_Clock`).

The publish script writes it in the same atomic step as the mask event of that frame, and
only when that event is new: so the document in Redis always belongs to the newest event of
the stream, whichever worker published it. :class:`StreamTracks` keeps the documents of the
streams it has seen in memory and reads one from Redis (``load``) when it has none: on a
worker's first frame of a stream, after a rebalance (:meth:`StreamTracks.clear`), and after
an event of the stream was not new (:meth:`StreamTracks.forget`: another worker published it,
so this one's copy may be behind). A worker that takes over a partition after a kill or a
rebalance therefore continues the tracks where the last published frame left them.

Frames are tracked in entry-id order per stream (capture time in ms, then seq: the order the
event store enforces). A frame at or before the document's ``last`` is a redelivery: its
event exists already (the publish refuses it again), so it is not tracked a second time and
neither forks nor duplicates a track.

Processing is plain data in and out: :meth:`StreamTracks.track` takes mask events and the
registry's view of each stream's zones and lines and returns the events with their
``track_id`` s, the documents to write and the analytics events; Redis is only behind
``load``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from segcore.tracking import Detection, Tracker, TrackerConfig, TrackerStateError
from segcore.tracking.analytics import Analytics, AnalyticsStateError, Line, Tracked, Zone
from services.common.events import (
    AnalyticsEvent,
    MaskEvent,
    encode_analytics,
)
from services.common.redis import entry_id

log = logging.getLogger("segstream.segment")

DOC_VERSION = 1

#: Reads the tracking documents of stream ids from the store (None where a stream has none).
Load = Callable[[list[str]], dict[str, bytes | None]]
#: A stream's zones and lines (the registry's view; empty when it has none), None when the
#: registry does not hold the stream (removed while its frames were in flight).
Geometry = Callable[[str], tuple[Sequence[Zone], Sequence[Line]] | None]
#: Whether a stream's frames are timed by their pts rather than their capture time: a file
#: read as fast as it decodes (not in real time), whose capture times are bursts and waits.
MediaTime = Callable[[str], bool]


def _entry_key(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq)


@dataclass(frozen=True)
class TrackedFrame:
    """A frame's event with its identities, and what its publish writes beside it: the
    stream's tracking document after this frame (None: a redelivered frame, not tracked) and
    its analytics events, encoded (and as JSON objects, for the metrics)."""

    event: MaskEvent
    document: bytes | None
    analytics: tuple[bytes, ...]
    analytics_bodies: tuple[dict[str, Any], ...] = ()
    counts: dict[str, Any] | None = None  # the stream's zone and line counts after it


@dataclass(frozen=True)
class _Clock:
    """The time a stream's frames are tracked on: capture time, or for a stream timed by
    its media ``t0 + (pts - pts0)`` from the pass's anchor (``pts0``, ``t0``); a pts that
    goes back (a looping file's next pass) anchors again after the last frame's time, by
    the capture times' step. ``pts`` and ``captured_at``: the last tracked frame's."""

    pts0: float
    t0: float
    pts: float
    captured_at: float

    @property
    def t(self) -> float:
        return self.t0 + (self.pts - self.pts0)

    def to_json(self) -> list[float]:
        return [self.pts0, self.t0, self.pts, self.captured_at]

    @classmethod
    def of(cls, value: Any) -> _Clock | None:
        """The clock of a document's ``clock`` (None: absent or not four finite numbers)."""
        if not isinstance(value, list) or len(value) != 4:
            return None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return None
        if not all(math.isfinite(v) for v in value):
            return None
        return cls(*(float(v) for v in value))


@dataclass
class _Stream:
    last: str | None  # entry id of the frame the state follows
    tracker: Tracker
    analytics: Analytics
    geometry: tuple[tuple[Zone, ...], tuple[Line, ...]]
    clock: _Clock | None = None


class StreamTracks:
    """The tracking state of the streams a worker handles (see the module docstring)."""

    def __init__(
        self,
        load: Load,
        geometry: Geometry,
        config: TrackerConfig | None = None,
        media_time: MediaTime | None = None,
    ) -> None:
        self.load = load
        self.geometry = geometry
        self.media_time = media_time or (lambda _stream_id: False)
        self.config = config or TrackerConfig()
        self._streams: dict[str, _Stream] = {}

    def clear(self) -> None:
        """Forget every stream's state (a rebalance: others may have published meanwhile)."""
        self._streams.clear()

    def streams(self) -> set[str]:
        """The streams whose state is held."""
        return set(self._streams)

    def forget(self, stream_ids: Iterable[str]) -> None:
        """Forget these streams' states: the next frame reads them from the store."""
        for stream_id in stream_ids:
            self._streams.pop(stream_id, None)

    def track(self, events: Sequence[MaskEvent]) -> list[TrackedFrame]:
        """The frames' events with their track ids, in the order given. The tracker sees
        each instance as subscribers will (``Instance.published``: its numbers rounded as
        the codec writes them), so a replay of the published events tracks exactly alike."""
        events = [
            dataclasses.replace(event, instances=tuple(i.published() for i in event.instances))
            for event in events
        ]
        # Streams the registry no longer holds are not tracked, and their state is read
        # again when they are back (one restored without their zones would lose counts).
        unknown = {e.stream_id for e in events if self.geometry(e.stream_id) is None}
        self.forget(unknown)
        wanted = sorted({e.stream_id for e in events if e.stream_id not in self._streams} - unknown)
        if wanted:
            found = self.load(wanted)
            for stream_id in wanted:
                self._streams[stream_id] = self._restore(stream_id, found.get(stream_id))
        out: list[TrackedFrame | None] = [None] * len(events)
        order = sorted(
            range(len(events)),
            key=lambda i: (events[i].stream_id, _entry_key(self._entry(events[i]))),
        )
        for i in order:
            untracked = events[i].stream_id in unknown
            out[i] = TrackedFrame(events[i], None, ()) if untracked else self._one(events[i])
        return [frame for frame in out if frame is not None]

    @staticmethod
    def _entry(event: MaskEvent) -> str:
        return entry_id(event.captured_at, event.seq)

    def _one(self, event: MaskEvent) -> TrackedFrame:
        stream = self._streams[event.stream_id]
        entry = self._entry(event)
        if stream.last is not None and _entry_key(entry) <= _entry_key(stream.last):
            return TrackedFrame(event, None, ())
        geometry = self._geometry(event.stream_id)
        if geometry is None:
            # A removed stream's frame still in flight: not tracked, and no document written
            # (tracked as a stream without zones, it would lose its counts, which a stream
            # added again within the retention goes on from).
            return TrackedFrame(event, None, ())
        if geometry != stream.geometry:  # zones or lines changed: counts of the kept ones go on
            stream.analytics = Analytics(
                *geometry, state=stream.analytics.state(), forget_after_s=self.config.max_age_s
            )
            stream.geometry = geometry
        detections = [
            Detection(inst.box, inst.score, inst.class_id, inst.rle()) for inst in event.instances
        ]
        t = self._time(stream, event)
        ids = stream.tracker.update(detections, t)
        instances = tuple(
            dataclasses.replace(inst, track_id=track_id)
            for inst, track_id in zip(event.instances, ids, strict=True)
        )
        tracked = [
            Tracked(track_id, inst.label, inst.class_id, inst.box, inst.rle())
            for inst, track_id in zip(instances, ids, strict=True)
            if track_id is not None
        ]
        bodies: list[dict[str, Any]] = []
        if stream.geometry[0] or stream.geometry[1]:
            bodies = stream.analytics.update(tracked, t, (event.height, event.width))
        stream.last = entry
        counts = stream.analytics.counts()
        document: dict[str, Any] = {
            "v": DOC_VERSION,
            "last": entry,
            "tracker": stream.tracker.state(),
            "analytics": stream.analytics.state(),
            "counts": counts,
        }
        if stream.clock is not None:
            document["clock"] = stream.clock.to_json()
        published_at = time.time()
        analytics = tuple(
            AnalyticsEvent.of(
                body,
                stream_id=event.stream_id,
                seq=event.seq,
                pts=event.pts,
                captured_at=event.captured_at,
                published_at=published_at,
            )
            for body in bodies
        )
        return TrackedFrame(
            dataclasses.replace(event, instances=instances),
            _compact(document),
            tuple(encode_analytics(a) for a in analytics),
            tuple(a.to_json() for a in analytics),
            counts,  # empty once the stream has no zones or lines: their series go
        )

    def _time(self, stream: _Stream, event: MaskEvent) -> float:
        """The time ``event``'s frame is tracked at (see :class:`_Clock`); never before the
        last frame's."""
        last = stream.clock
        if not self.media_time(event.stream_id):
            stream.clock = None
            return event.captured_at if last is None else max(event.captured_at, last.t)
        if last is None:  # the first frame (or the first timed by its media): from now on
            stream.clock = _Clock(event.pts, event.captured_at, event.pts, event.captured_at)
        elif event.pts > last.pts:
            stream.clock = dataclasses.replace(last, pts=event.pts, captured_at=event.captured_at)
        else:  # pts went back: a new pass of a looping file
            t0 = last.t + max(event.captured_at - last.captured_at, 0.001)
            stream.clock = _Clock(event.pts, t0, event.pts, event.captured_at)
        return stream.clock.t

    def _geometry(self, stream_id: str) -> tuple[tuple[Zone, ...], tuple[Line, ...]] | None:
        found = self.geometry(stream_id)
        if found is None:
            return None
        zones, lines = found
        return tuple(zones), tuple(lines)

    def _restore(self, stream_id: str, raw: bytes | None) -> _Stream:
        geometry = self._geometry(stream_id) or ((), ())
        fresh = _Stream(
            None,
            Tracker(self.config),
            Analytics(*geometry, forget_after_s=self.config.max_age_s),
            geometry,
        )
        if raw is None:
            return fresh
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("v") != DOC_VERSION:
                raise ValueError(f"version must be {DOC_VERSION}")
            last = doc["last"]
            if not isinstance(last, str):
                raise ValueError(f"last must be an entry id, got {type(last).__name__}")
            _entry_key(last)
            tracker = Tracker(self.config, state=doc["tracker"])
            analytics = Analytics(
                *geometry, state=doc["analytics"], forget_after_s=self.config.max_age_s
            )
            return _Stream(str(last), tracker, analytics, geometry, _Clock.of(doc.get("clock")))
        except (
            ValueError,
            KeyError,
            TypeError,
            RecursionError,  # JSON nested past the parser's depth
            TrackerStateError,
            AnalyticsStateError,
        ) as exc:
            # A document this worker cannot read: its tracks start again, under new ids
            # (the old one's id counter, when it can be read, so no id is given twice).
            log.error(
                "tracking document unreadable, tracks start again: %s",
                exc,
                extra={"stream": stream_id},
            )
            with_next = _next_id(raw)
            if with_next is not None:
                fresh.tracker.next_id = with_next
            return fresh


#: Track ids stay below 2**53, so every JSON reader (JavaScript's numbers) holds them exactly.
MAX_TRACK_ID = 2**53


def _next_id(raw: bytes) -> int | None:
    try:
        value = json.loads(raw)["tracker"]["next"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < MAX_TRACK_ID:
        return value
    return None


def _compact(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
