"""Zone and line analytics on tracked instances: plain data in, plain data out.

:class:`Analytics` takes each frame's tracked instances (track id, label, box, COCO RLE mask
at the frame's size) with the frame's capture time and answers the frame's analytics events,
in order, as JSON-ready bodies (:meth:`Analytics.update`). Its whole state (which track is
in which zone since when, which side of each line it was last seen on, the counts) is a
compact JSON document (:meth:`Analytics.state`); ``Analytics(zones, lines, state=doc)``
continues exactly where the writer stopped, so a segment worker can keep it in Redis beside
the events it belongs to.

Coordinates of zones and lines are normalised to the frame, ``x`` and ``y`` in [0, 1] with
``(0, 0)`` the top-left corner and ``y`` down, so one definition holds at any resolution a
stream is sampled or resized to.

**Zones.** A track is *in* a zone when the share of its mask's area inside the polygon is at
least the zone's ``min_fraction`` (and above 0); once in, it stays in until the share falls
below ``min_fraction - zone_hysteresis`` (or to 0), so a mask whose share hovers at the
threshold does not enter and exit on every frame. Shares are computed on the RLEs with
pycocotools: the polygon is rasterised once per frame size (cached) and intersected with each
mask. A track with no mask is measured by its box. ``zone.enter`` and ``zone.exit`` mark the
changes (``dwell_s`` on exit: seconds of capture time since the enter); ``zone.loiter`` once
per visit when the dwell reaches the zone's ``loiter_s``. A track not seen for longer than
``forget_after_s`` (the tracker's death time) is forgotten: it exits its zones, with the
dwell up to when it was last seen.

**Lines.** A crossing is the track's reference point, the centre of its box, moving from one
side of the segment ``a``-``b`` to the other. Sides are decided with a dead band: a point
within ``line_margin`` (a fraction of the frame's diagonal) of the line's infinite extension
keeps the side the track had before, so a track that stands on the line and jitters across
it counts nothing until it leaves the band on the other side. A change of side counts as one
crossing when the straight step from the last point clearly on the old side to the first
point clearly on the new one passes through the segment itself (not around one of its ends).
``forward`` is from the left of ``a -> b`` to its right, as the image shows it (``y`` down:
a line from ``(0, 0.5)`` to ``(1, 0.5)`` has its left above it), else ``backward``. A track's
first observation only sets its side.

Event bodies (the frame's fields, ``v``, ``stream_id``, ``seq``, ``pts``, ``captured_at`` and
``published_at``, are the publisher's to add)::

    {"type": "zone.enter" | "zone.exit" | "zone.loiter" | "line.cross", "track_id", "label",
     "class_id", "zone" | "line", "dwell_s" (zone.exit, zone.loiter), "direction"
     (line.cross), "occupancy" (zone.*: after the event), "count" (zone.enter: entries so
     far; line.cross: crossings so far in that direction)}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

STATE_VERSION = 1
ZONE_HYSTERESIS = 0.1  # share of the mask a track in a zone may lose below min_fraction
LINE_MARGIN = 0.01  # dead band either side of a line, a fraction of the frame's diagonal
DWELL_DIGITS = 3  # dwell_s is rounded to the millisecond


class AnalyticsStateError(ValueError):
    """An analytics state document that cannot be restored; the message says what is wrong."""


@dataclass(frozen=True)
class Zone:
    """A polygon, normalised ``(x, y)`` in [0, 1], with the share of a mask that must be
    inside it for the instance to count as in, and the dwell after which it loiters."""

    name: str
    polygon: tuple[tuple[float, float], ...]
    min_fraction: float = 0.5
    loiter_s: float | None = None


@dataclass(frozen=True)
class Line:
    """A segment from ``a`` to ``b``, normalised ``(x, y)`` in [0, 1]."""

    name: str
    a: tuple[float, float]
    b: tuple[float, float]


@dataclass(frozen=True)
class Tracked:
    """One tracked instance of a frame: ``box`` xyxy in frame pixels, ``mask`` COCO RLE
    ``{"size": [H, W], "counts": str or bytes}`` at the frame's size (None: the box)."""

    track_id: int
    label: str
    class_id: int
    box: tuple[float, float, float, float]
    mask: dict[str, Any] | None


@dataclass
class _Visit:
    entered: float  # capture time of the enter
    loitered: bool = False


@dataclass
class _Side:
    side: int  # -1 left, +1 right, 0 not yet clear of the dead band
    x: float  # the last point clearly on ``side`` (normalised), where a crossing starts
    y: float


@dataclass
class _Track:
    label: str
    class_id: int
    seen: float  # capture time of its last observation
    zones: dict[str, _Visit]
    sides: dict[str, _Side]


def _rle(mask: dict[str, Any]) -> dict[str, Any]:
    counts = mask["counts"]
    return {"size": [int(mask["size"][0]), int(mask["size"][1])], "counts": counts}


class Analytics:
    """Zone and line events of one stream's tracks (see the module docstring).

    ``zones``, ``lines``: the stream's definitions (names unique within each); ``state``: a
    document of :meth:`state` to continue from (its zones and lines that are no longer
    defined are dropped, new ones start empty); ``forget_after_s``: seconds of capture time
    after which an unseen track is forgotten (the tracker's death time; None: never);
    ``zone_hysteresis``, ``line_margin``: the bands described above."""

    def __init__(
        self,
        zones: Sequence[Zone] = (),
        lines: Sequence[Line] = (),
        state: dict[str, Any] | None = None,
        *,
        forget_after_s: float | None = None,
        zone_hysteresis: float = ZONE_HYSTERESIS,
        line_margin: float = LINE_MARGIN,
    ) -> None:
        self.zones = tuple(zones)
        self.lines = tuple(lines)
        for kind, names in (
            ("zone", [z.name for z in self.zones]),
            ("line", [x.name for x in self.lines]),
        ):
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {names}")
        self.forget_after_s = forget_after_s
        self.zone_hysteresis = zone_hysteresis
        self.line_margin = line_margin
        self._rasters: dict[tuple[str, int, int], dict[str, Any]] = {}
        self._tracks: dict[int, _Track] = {}
        self._entries = {z.name: 0 for z in self.zones}
        self._exits = {z.name: 0 for z in self.zones}
        self._crossings = {x.name: [0, 0] for x in self.lines}  # forward, backward
        if state is not None:
            self._restore(state)

    # -- per frame ------------------------------------------------------------------------

    def update(
        self, tracked: Sequence[Tracked], t: float, frame_size: tuple[int, int]
    ) -> list[dict[str, Any]]:
        """The events of one frame: ``tracked`` its tracked instances, ``t`` its capture time
        in seconds, ``frame_size`` its ``(height, width)`` in pixels (the RLE's ``size``
        order). Tracks forgotten at ``t`` exit first, then each instance in order: its zones
        in definition order (exit, enter, loiter), then its lines."""
        height, width = int(frame_size[0]), int(frame_size[1])
        events = self._forget(t, {item.track_id for item in tracked})
        fractions = self._fractions(tracked, height, width) if self.zones else None
        for index, item in enumerate(tracked):
            track = self._tracks.get(item.track_id)
            if track is None:
                track = _Track(item.label, item.class_id, t, {}, {})
                self._tracks[item.track_id] = track
            track.label, track.class_id, track.seen = item.label, item.class_id, t
            if fractions is not None:
                events.extend(self._zone_events(item.track_id, track, fractions[index], t))
            events.extend(self._line_events(item, track, height, width))
        return events

    def _forget(self, t: float, present: set[int]) -> list[dict[str, Any]]:
        if self.forget_after_s is None:
            return []
        events: list[dict[str, Any]] = []
        for track_id in sorted(self._tracks):
            track = self._tracks[track_id]
            if track_id in present or t - track.seen <= self.forget_after_s:
                continue
            for zone in self.zones:
                visit = track.zones.pop(zone.name, None)
                if visit is not None:
                    events.append(self._exit(track_id, track, zone, visit, track.seen))
            del self._tracks[track_id]
        return events

    def _raster(self, zone: Zone, height: int, width: int) -> dict[str, Any]:
        key = (zone.name, height, width)
        raster = self._rasters.get(key)
        if raster is None:
            flat = [v for x, y in zone.polygon for v in (x * width, y * height)]
            raster = mask_utils.merge(mask_utils.frPyObjects([flat], height, width))
            self._rasters[key] = raster
        return raster

    def _fractions(self, tracked: Sequence[Tracked], height: int, width: int) -> np.ndarray:
        """(instances, zones) float: the share of each instance's mask inside each zone."""
        out = np.zeros((len(tracked), len(self.zones)))
        for i, item in enumerate(tracked):
            if item.mask is not None:
                rle = _rle(item.mask)
                h, w = rle["size"]
            else:
                x1, y1, x2, y2 = item.box
                h, w = height, width
                box = np.array([[x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)]], np.float64)
                if h <= 0 or w <= 0:
                    continue
                rle = mask_utils.frPyObjects(box, h, w)[0]
            area = float(mask_utils.area(rle))
            if area <= 0:
                continue
            for j, zone in enumerate(self.zones):
                both = mask_utils.merge([rle, self._raster(zone, h, w)], intersect=True)
                out[i, j] = float(mask_utils.area(both)) / area
        return out

    def _occupancy(self, zone: str) -> int:
        return sum(1 for track in self._tracks.values() if zone in track.zones)

    def _body(self, kind: str, track_id: int, track: _Track, **fields: Any) -> dict[str, Any]:
        return {
            "type": kind,
            "track_id": track_id,
            "label": track.label,
            "class_id": track.class_id,
            **fields,
        }

    def _exit(
        self, track_id: int, track: _Track, zone: Zone, visit: _Visit, t: float
    ) -> dict[str, Any]:
        self._exits[zone.name] += 1
        return self._body(
            "zone.exit",
            track_id,
            track,
            zone=zone.name,
            dwell_s=round(max(0.0, t - visit.entered), DWELL_DIGITS),
            occupancy=self._occupancy(zone.name),
        )

    def _zone_events(
        self, track_id: int, track: _Track, fractions: np.ndarray, t: float
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for zone, fraction in zip(self.zones, fractions.tolist(), strict=True):
            visit = track.zones.get(zone.name)
            if visit is not None:
                keep = max(0.0, zone.min_fraction - self.zone_hysteresis)
                if fraction <= 0 or fraction < keep:
                    del track.zones[zone.name]
                    events.append(self._exit(track_id, track, zone, visit, t))
                    continue
            elif fraction > 0 and fraction >= zone.min_fraction:
                visit = _Visit(t)
                track.zones[zone.name] = visit
                self._entries[zone.name] += 1
                events.append(
                    self._body(
                        "zone.enter",
                        track_id,
                        track,
                        zone=zone.name,
                        occupancy=self._occupancy(zone.name),
                        count=self._entries[zone.name],
                    )
                )
            else:
                continue
            dwell = t - visit.entered
            if zone.loiter_s is not None and not visit.loitered and dwell >= zone.loiter_s:
                visit.loitered = True
                events.append(
                    self._body(
                        "zone.loiter",
                        track_id,
                        track,
                        zone=zone.name,
                        dwell_s=round(dwell, DWELL_DIGITS),
                        occupancy=self._occupancy(zone.name),
                    )
                )
        return events

    def _line_events(
        self, item: Tracked, track: _Track, height: int, width: int
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if not self.lines or height <= 0 or width <= 0:
            return events
        x1, y1, x2, y2 = item.box
        px, py = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height  # normalised reference point
        margin = self.line_margin * math.hypot(width, height)
        for line in self.lines:
            side = _side_of(line, px, py, width, height, margin)
            last = track.sides.get(line.name)
            if last is None:
                track.sides[line.name] = _Side(side, px, py)
                continue
            if side == 0:
                continue  # in the dead band: keeps the side it had, and where it left it
            if last.side != 0 and side != last.side and _through(line, last, px, py):
                forward = side > 0
                counts = self._crossings[line.name]
                counts[0 if forward else 1] += 1
                events.append(
                    self._body(
                        "line.cross",
                        item.track_id,
                        track,
                        line=line.name,
                        direction="forward" if forward else "backward",
                        count=counts[0 if forward else 1],
                    )
                )
            last.side, last.x, last.y = side, px, py
        return events

    # -- counts and state -------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """``{"zones": {name: {"occupancy", "entries", "exits"}}, "lines": {name:
        {"forward", "backward"}}}``, every defined zone and line present."""
        return {
            "zones": {
                z.name: {
                    "occupancy": self._occupancy(z.name),
                    "entries": self._entries[z.name],
                    "exits": self._exits[z.name],
                }
                for z in self.zones
            },
            "lines": {
                x.name: {
                    "forward": self._crossings[x.name][0],
                    "backward": self._crossings[x.name][1],
                }
                for x in self.lines
            },
        }

    def state(self) -> dict[str, Any]:
        """The whole state, JSON-compatible: ``{"v": 1, "tracks": {id: [label, class_id,
        seen, {zone: [entered, loitered]}, {line: [side, x, y]}]}, "entries": {zone: n},
        "exits": {zone: n}, "crossings": {line: [forward, backward]}}`` (times and points as
        the floats they are, so a restored object answers exactly as this one)."""
        return {
            "v": STATE_VERSION,
            "tracks": {
                str(track_id): [
                    track.label,
                    track.class_id,
                    track.seen,
                    {name: [v.entered, int(v.loitered)] for name, v in track.zones.items()},
                    {name: [s.side, s.x, s.y] for name, s in track.sides.items()},
                ]
                for track_id, track in self._tracks.items()
            },
            "entries": dict(self._entries),
            "exits": dict(self._exits),
            "crossings": {name: list(c) for name, c in self._crossings.items()},
        }

    def _restore(self, doc: Any) -> None:
        if not isinstance(doc, dict) or doc.get("v") != STATE_VERSION:
            version = doc.get("v") if isinstance(doc, dict) else None
            raise AnalyticsStateError(
                f"analytics state: version {version!r} is not {STATE_VERSION}"
            )
        zones = {z.name for z in self.zones}
        lines = {x.name for x in self.lines}
        try:
            for name, n in doc["entries"].items():
                if name in zones:
                    self._entries[name] = int(n)
            for name, n in doc["exits"].items():
                if name in zones:
                    self._exits[name] = int(n)
            for name, (fwd, bwd) in doc["crossings"].items():
                if name in lines:
                    self._crossings[name] = [int(fwd), int(bwd)]
            for key, (label, class_id, seen, visits, sides) in doc["tracks"].items():
                self._tracks[int(key)] = _Track(
                    str(label),
                    int(class_id),
                    float(seen),
                    {n: _Visit(float(e), bool(lo)) for n, (e, lo) in visits.items() if n in zones},
                    {
                        n: _Side(int(s), float(x), float(y))
                        for n, (s, x, y) in sides.items()
                        if n in lines
                    },
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AnalyticsStateError(f"analytics state: malformed ({exc!r})") from None


def _side_of(line: Line, px: float, py: float, width: int, height: int, margin: float) -> int:
    """+1 right of ``a -> b`` (image coordinates, y down), -1 left, 0 within ``margin``
    pixels of the line through a and b (in pixels: the frame's aspect counts)."""
    ax, ay = line.a[0] * width, line.a[1] * height
    dx, dy = line.b[0] * width - ax, line.b[1] * height - ay
    length = math.hypot(dx, dy)
    if length == 0:
        return 0
    # With y down, a point whose cross product (b - a) x (p - a) is positive lies to the
    # right of a -> b as seen on screen (clockwise from the direction of travel).
    distance = (dx * (py * height - ay) - dy * (px * width - ax)) / length
    if distance > margin:
        return 1
    if distance < -margin:
        return -1
    return 0


def _through(line: Line, last: _Side, px: float, py: float) -> bool:
    """Whether the step from ``last``'s point to ``(px, py)``, which lie on either side of
    the line through a and b, meets it between a and b (normalised coordinates: where a
    step meets a line does not change with the axes' scales)."""
    ax, ay = line.a
    dx, dy = line.b[0] - ax, line.b[1] - ay
    sx, sy = px - last.x, py - last.y
    denom = sx * dy - sy * dx
    if denom == 0:
        return False
    u = ((ax - last.x) * sy - (ay - last.y) * sx) / denom  # position along a -> b
    return 0.0 <= u <= 1.0
