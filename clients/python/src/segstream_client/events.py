"""Mask events, the contract subscribers rely on: a pure codec (JSON <-> frozen dataclasses).

Schema v1, documented in docs/architecture.md ("Mask events"): ``{"v": 1, "stream_id",
"seq", "pts", "captured_at", "published_at", "model", "width", "height", "instances":
[{"label", "class_id", "score", "box": [x1, y1, x2, y2], "mask": {"size": [H, W], "counts":
"<COCO compressed RLE>"}, "track_id"?}]}``. Masks are at the frame's own resolution, so
``pycocotools.mask.decode`` reads them as they are. ``track_id`` (an int >= 0) is present
only on instances that a tracker has confirmed; readers take events with or without it.

The codec has no dependencies beyond the standard library: the API and workers
(``services.common.events`` re-exports this module) and the SDK share it. Other event
kinds live beside this one, each with its dataclass, ``encode_*`` and ``decode_*``, built
on the same field checks (:func:`field`, :func:`count_field`, :func:`event_object`), and
each has an ``*_of(parsed JSON)`` for a subscription's messages.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

VERSION = 1


class DecodeError(ValueError):
    """Bytes that are not a valid event, with what was wrong."""


SCORE_DIGITS = 4  # decimals of an instance's score in its JSON
BOX_DIGITS = 1  # decimals of its box's pixel coordinates


@dataclass(frozen=True)
class Instance:
    """One instance of a mask event. ``box``: xyxy in frame pixels; ``mask_size``: (H, W);
    ``mask_counts``: COCO compressed RLE; ``track_id``: the tracker's confirmed id, or None."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]
    mask_size: tuple[int, int]
    mask_counts: str
    track_id: int | None = None

    def published(self) -> Instance:
        """The instance as its JSON reads back: score and box rounded as :meth:`to_json`
        writes them."""
        x1, y1, x2, y2 = (round(v, BOX_DIGITS) for v in self.box)
        return dataclasses.replace(
            self, score=round(self.score, SCORE_DIGITS), box=(x1, y1, x2, y2)
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, SCORE_DIGITS),
            "box": [round(v, BOX_DIGITS) for v in self.box],
            "mask": {"size": list(self.mask_size), "counts": self.mask_counts},
        }
        if self.track_id is not None:
            data["track_id"] = self.track_id
        return data

    def rle(self) -> dict[str, Any]:
        """The mask as pycocotools takes it."""
        return {"size": list(self.mask_size), "counts": self.mask_counts.encode("ascii")}


@dataclass(frozen=True)
class MaskEvent:
    stream_id: str
    seq: int
    pts: float
    captured_at: float
    published_at: float
    model: str
    width: int
    height: int
    instances: tuple[Instance, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "stream_id": self.stream_id,
            "seq": self.seq,
            "pts": self.pts,
            "captured_at": self.captured_at,
            "published_at": self.published_at,
            "model": self.model,
            "width": self.width,
            "height": self.height,
            "instances": [i.to_json() for i in self.instances],
        }


def encode_event(event: MaskEvent) -> bytes:
    return json.dumps(event.to_json(), separators=(",", ":")).encode()


def field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[name]``, which must be of ``kind`` (a bool is never an int here)."""
    if name not in data:
        raise DecodeError(f"{where}: missing '{name}'")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DecodeError(f"{where}: '{name}' must be {kind}, got {type(value).__name__}")
    return value


def optional_field(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str
) -> Any:
    """``data[name]`` as :func:`field` checks it, None when absent (or null)."""
    if data.get(name) is None:
        return None
    return field(data, name, kind, where)


def count_field(data: dict[str, Any], name: str, where: str, *, optional: bool = False) -> Any:
    """An int >= 0 (an id, a count; a bool or a float is neither); None when ``optional``
    and absent (or null). The error names ``where.name``."""
    if optional and data.get(name) is None:
        return None
    if name not in data:
        raise DecodeError(f"{where}: missing '{name}'")
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        shown = repr(value) if isinstance(value, int | float) else type(value).__name__
        raise DecodeError(f"{where}.{name}: must be an int >= 0, got {shown}")
    return value


def load_object(raw: bytes | str) -> dict[str, Any]:
    """The JSON object of one event of version :data:`VERSION`; DecodeError otherwise."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    return event_object(data)


def event_object(data: Any) -> dict[str, Any]:
    """``data`` (parsed JSON) when it is an object of version :data:`VERSION`."""
    if not isinstance(data, dict):
        raise DecodeError("an event must be a JSON object")
    version = data.get("v")
    if version != VERSION:
        raise DecodeError(f"unsupported event version {version!r} (this reads {VERSION})")
    return data


def _instance(data: Any, index: int) -> Instance:
    where = f"instances[{index}]"
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: must be an object")
    box = field(data, "box", list, where)
    mask = field(data, "mask", dict, where)
    size = field(mask, "size", list, f"{where}.mask")
    if len(box) != 4 or not all(isinstance(v, int | float) for v in box):
        raise DecodeError(f"{where}: 'box' must be 4 numbers")
    if len(size) != 2 or not all(isinstance(v, int) and v >= 0 for v in size):
        raise DecodeError(f"{where}.mask: 'size' must be [H, W]")
    return Instance(
        label=field(data, "label", str, where),
        class_id=field(data, "class_id", int, where),
        score=float(field(data, "score", (int, float), where)),
        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
        mask_size=(size[0], size[1]),
        mask_counts=field(mask, "counts", str, f"{where}.mask"),
        track_id=count_field(data, "track_id", where, optional=True),
    )


def decode_event(raw: bytes | str) -> MaskEvent:
    """Parse one mask event; DecodeError names what is wrong."""
    return mask_event_of(load_object(raw))


def mask_event_of(data: Any) -> MaskEvent:
    """The mask event of parsed JSON (a subscription's message holds it parsed)."""
    data = event_object(data)
    instances = field(data, "instances", list, "event")
    return MaskEvent(
        stream_id=field(data, "stream_id", str, "event"),
        seq=field(data, "seq", int, "event"),
        pts=float(field(data, "pts", (int, float), "event")),
        captured_at=float(field(data, "captured_at", (int, float), "event")),
        published_at=float(field(data, "published_at", (int, float), "event")),
        model=field(data, "model", str, "event"),
        width=field(data, "width", int, "event"),
        height=field(data, "height", int, "event"),
        instances=tuple(_instance(item, i) for i, item in enumerate(instances)),
    )


# Analytics events: a stream's zone and line events (docs/architecture.md, "Zones and
# lines"), on their own Redis stream beside the mask events.

ZONE_EVENTS = ("zone.enter", "zone.exit", "zone.loiter")
LINE_EVENTS = ("line.cross",)
ANALYTICS_TYPES = ZONE_EVENTS + LINE_EVENTS
DIRECTIONS = ("forward", "backward")


@dataclass(frozen=True)
class AnalyticsEvent:
    """One zone or line event of a stream's track, with the frame it was decided on.

    ``type``: one of :data:`ANALYTICS_TYPES`; ``zone`` (zone events) or ``line``
    (``line.cross``): the name; ``dwell_s``: seconds in the zone (``zone.exit``,
    ``zone.loiter``); ``direction``: ``forward`` (from the left of the line's a -> b to its
    right, as the image shows it) or ``backward`` (``line.cross``); ``occupancy``: tracks in
    the zone after the event (zone events); ``count``: the zone's entries so far
    (``zone.enter``) or the line's crossings so far in that direction (``line.cross``)."""

    stream_id: str
    seq: int
    pts: float
    captured_at: float
    published_at: float
    type: str
    track_id: int
    label: str
    class_id: int
    zone: str | None = None
    line: str | None = None
    dwell_s: float | None = None
    direction: str | None = None
    occupancy: int | None = None
    count: int | None = None

    @classmethod
    def of(
        cls,
        body: dict[str, Any],
        *,
        stream_id: str,
        seq: int,
        pts: float,
        captured_at: float,
        published_at: float,
    ) -> AnalyticsEvent:
        """The event of an analytics body (``segcore.tracking.Analytics.update``) of the
        frame ``seq`` (capture time ``captured_at``); checked as :func:`decode_analytics`
        checks an event."""
        data = {
            **body,
            "v": VERSION,
            "stream_id": stream_id,
            "seq": seq,
            "pts": pts,
            "captured_at": captured_at,
            "published_at": published_at,
        }
        return _analytics(data)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": VERSION,
            "type": self.type,
            "stream_id": self.stream_id,
            "seq": self.seq,
            "pts": self.pts,
            "captured_at": self.captured_at,
            "published_at": self.published_at,
            "track_id": self.track_id,
            "label": self.label,
            "class_id": self.class_id,
        }
        for name in ("zone", "line", "dwell_s", "direction", "occupancy", "count"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


def encode_analytics(event: AnalyticsEvent) -> bytes:
    return json.dumps(event.to_json(), separators=(",", ":")).encode()


def _analytics(data: dict[str, Any]) -> AnalyticsEvent:
    where = "event"
    kind = field(data, "type", str, where)
    if kind not in ANALYTICS_TYPES:
        raise DecodeError(f"event.type: {kind!r} is not one of {', '.join(ANALYTICS_TYPES)}")
    zone_event = kind in ZONE_EVENTS
    name = field(data, "zone" if zone_event else "line", str, where)
    dwell = None
    if kind in ("zone.exit", "zone.loiter"):
        dwell = float(field(data, "dwell_s", (int, float), where))
        if not dwell >= 0:
            raise DecodeError(f"event.dwell_s: must be >= 0, got {dwell!r}")
    direction = None
    if not zone_event:
        direction = field(data, "direction", str, where)
        if direction not in DIRECTIONS:
            raise DecodeError(f"event.direction: {direction!r} is not forward or backward")
    counted = kind in ("zone.enter", "line.cross")
    return AnalyticsEvent(
        stream_id=field(data, "stream_id", str, where),
        seq=field(data, "seq", int, where),
        pts=float(field(data, "pts", (int, float), where)),
        captured_at=float(field(data, "captured_at", (int, float), where)),
        published_at=float(field(data, "published_at", (int, float), where)),
        type=kind,
        track_id=count_field(data, "track_id", where),
        label=field(data, "label", str, where),
        class_id=count_field(data, "class_id", where),
        zone=name if zone_event else None,
        line=None if zone_event else name,
        dwell_s=dwell,
        direction=direction,
        occupancy=count_field(data, "occupancy", where) if zone_event else None,
        count=count_field(data, "count", where) if counted else None,
    )


def decode_analytics(raw: bytes | str) -> AnalyticsEvent:
    """Parse one analytics event; DecodeError names what is wrong (``event.direction``)."""
    return _analytics(load_object(raw))


def analytics_event_of(data: Any) -> AnalyticsEvent:
    """The analytics event of parsed JSON, as :func:`mask_event_of`."""
    return _analytics(event_object(data))


__all__ = [
    "ANALYTICS_TYPES",
    "DIRECTIONS",
    "LINE_EVENTS",
    "VERSION",
    "ZONE_EVENTS",
    "AnalyticsEvent",
    "DecodeError",
    "Instance",
    "MaskEvent",
    "analytics_event_of",
    "decode_analytics",
    "decode_event",
    "encode_analytics",
    "encode_event",
    "mask_event_of",
]
