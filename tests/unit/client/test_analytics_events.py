"""The analytics-event codec: bodies of segcore's Analytics become events that round-trip,
only the fields of their type are written, and a bad event is named field by field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

import services.common.events as service_events
from segcore.tracking import Analytics, Line, Tracked, Zone
from segstream_client import events
from segstream_client.events import AnalyticsEvent, DecodeError, decode_analytics, encode_analytics

FRAME = {
    "stream_id": "cam-1",
    "seq": 7,
    "pts": 1.4,
    "captured_at": 1764000000.5,
    "published_at": 1764000000.6,
}


def bodies() -> list[dict[str, object]]:
    """One of each kind, from a track that enters a zone, loiters, crosses a line, exits."""
    zone = Zone("right", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)), loiter_s=1.0)
    line = Line("gate", (0.5, 0.0), (0.5, 1.0))
    analytics = Analytics([zone], [line])
    out: list[dict[str, object]] = []
    for t, x0 in enumerate((10, 150, 160, 20)):
        mask = np.zeros((50, 200), np.uint8)
        mask[10:30, x0 : x0 + 20] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        item = Tracked(4, "car", 2, (x0, 10.0, x0 + 20.0, 30.0), rle)
        out += analytics.update([item], float(t), (50, 200))
    assert [b["type"] for b in out] == [
        "zone.enter",
        "line.cross",
        "zone.loiter",
        "zone.exit",
        "line.cross",
    ]
    return out


def test_bodies_round_trip_with_only_their_fields() -> None:
    for body in bodies():
        event = AnalyticsEvent.of(body, **FRAME)  # type: ignore[arg-type]
        raw = encode_analytics(event)
        assert decode_analytics(raw) == event
        data = json.loads(raw)
        assert data == {"v": 1, **FRAME, **body}  # exactly the schema's fields of its type
    assert service_events.decode_analytics is events.decode_analytics


BASE = {
    "v": 1,
    **FRAME,
    "type": "line.cross",
    "track_id": 3,
    "label": "person",
    "class_id": 0,
    "line": "gate",
    "direction": "forward",
    "count": 2,
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"type": "zone.wave"}, "event.type"),
        ({"direction": "sideways"}, "event.direction"),
        ({"direction": None}, "'direction'"),
        ({"line": None}, "'line'"),
        ({"track_id": -1}, "event.track_id"),
        ({"track_id": 1.5}, "event.track_id"),
        ({"count": True}, "event.count"),
        ({"seq": "7"}, "'seq'"),
        ({"v": 2}, "version"),
        ({"type": "zone.exit", "zone": "a", "occupancy": 0}, "'dwell_s'"),
        ({"type": "zone.exit", "zone": "a", "occupancy": 0, "dwell_s": -1}, "event.dwell_s"),
        ({"type": "zone.enter", "zone": "a", "count": 1}, "missing 'occupancy'"),
        ({"type": "zone.enter", "occupancy": 1}, "'zone'"),
    ],
)
def test_a_bad_event_is_named(change: dict[str, object], named: str) -> None:
    data = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(DecodeError, match=named.replace(".", r"\.")):
        decode_analytics(json.dumps(data))


def test_not_json_or_not_an_object() -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        decode_analytics(b"{")
    with pytest.raises(DecodeError, match="object"):
        decode_analytics(b"[]")
