"""The mask-event codec: round trip, and errors that say what is wrong."""

from __future__ import annotations

import json

import pytest

from services.common.events import DecodeError, Instance, MaskEvent, decode_event, encode_event


def _event() -> MaskEvent:
    return MaskEvent(
        stream_id="cam-1",
        seq=12,
        pts=4.1,
        captured_at=1764000000.123,
        published_at=1764000000.2,
        model="yolact_r18_demo",
        width=320,
        height=240,
        instances=(Instance("disc", 0, 0.93, (1.0, 2.0, 30.5, 40.0), (240, 320), "o`1"),),
    )


def test_round_trip_matches_the_design_schema() -> None:
    raw = encode_event(_event())
    data = json.loads(raw)
    assert set(data) == {
        "v", "stream_id", "seq", "pts", "captured_at", "published_at", "model", "width",
        "height", "instances",
    }  # fmt: skip
    assert data["v"] == 1
    assert data["instances"][0]["mask"] == {"size": [240, 320], "counts": "o`1"}
    assert decode_event(raw) == _event()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(v=2), "unsupported event version 2"),
        (lambda d: d.pop("seq"), "missing 'seq'"),
        (lambda d: d.update(seq="12"), "'seq' must be"),
        (lambda d: d["instances"][0].update(box=[1, 2, 3]), r"instances\[0\]: 'box' must be 4"),
        (lambda d: d["instances"][0]["mask"].update(size=[240]), r"instances\[0\]\.mask: 'size'"),
        (lambda d: d["instances"][0].pop("label"), r"instances\[0\]: missing 'label'"),
    ],
)
def test_bad_events_are_named(change, message: str) -> None:
    data = json.loads(encode_event(_event()))
    change(data)
    with pytest.raises(DecodeError, match=message):
        decode_event(json.dumps(data))


def test_not_json() -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        decode_event(b"\xff{")
    with pytest.raises(DecodeError, match="JSON object"):
        decode_event(b"[1, 2]")
