"""The mask-event codec's optional ``track_id``: written only when set, read with or without
it, and a value that is not an id is named."""

from __future__ import annotations

import json
import random

import pytest

import services.common.events as service_events
from segstream_client import events
from segstream_client.events import DecodeError, Instance, MaskEvent, decode_event, encode_event


def _event(*track_ids: int | None) -> MaskEvent:
    return MaskEvent(
        stream_id="cam-1",
        seq=3,
        pts=0.6,
        captured_at=1764000000.0,
        published_at=1764000000.1,
        model="yolact_r18_demo",
        width=320,
        height=240,
        instances=tuple(
            Instance("disc", 0, 0.9, (1.0, 2.0, 3.0, 4.0), (240, 320), "o`1", track_id=t)
            for t in track_ids
        ),
    )


def test_services_name_the_sdk_codec() -> None:
    assert service_events.Instance is events.Instance
    assert service_events.decode_event is events.decode_event
    assert service_events.DecodeError is events.DecodeError


def test_track_id_is_written_only_when_set() -> None:
    data = json.loads(encode_event(_event(7, None)))
    assert data["instances"][0]["track_id"] == 7
    assert "track_id" not in data["instances"][1]
    assert data["v"] == 1


def test_round_trip_with_and_without_track_id() -> None:
    event = _event(1, None, 0)
    decoded = decode_event(encode_event(event))
    assert decoded == event
    assert [i.track_id for i in decoded.instances] == [1, None, 0]


def test_events_without_track_id_still_decode() -> None:
    data = json.loads(encode_event(_event(None)))
    data["instances"][0].pop("track_id", None)
    assert decode_event(json.dumps(data)).instances[0].track_id is None
    data["instances"][0]["track_id"] = None  # a null reads as absent
    assert decode_event(json.dumps(data)).instances[0].track_id is None


@pytest.mark.parametrize("bad", [True, False, 1.0, 2.5, -1, "3", [1]])
def test_a_bad_track_id_is_named(bad: object) -> None:
    data = json.loads(encode_event(_event(None, 4)))
    data["instances"][1]["track_id"] = bad
    with pytest.raises(DecodeError, match=r"^instances\[1\]\.track_id: must be an int >= 0"):
        decode_event(json.dumps(data))


def test_published_is_what_the_json_reads_back() -> None:
    """``Instance.published`` rounds as the codec writes: the tracker relies on it to see
    instances exactly as subscribers (and a replay) do."""
    rng = random.Random(7)
    for _ in range(200):
        box = tuple(rng.uniform(-5, 2000) for _ in range(4))
        inst = Instance("car", 2, rng.random(), box, (1080, 1920), "PQ0", track_id=3)  # type: ignore[arg-type]
        event = MaskEvent("cam", 1, 0.5, 1.7e9, 1.7e9, "m", 1920, 1080, (inst,))
        assert decode_event(encode_event(event)).instances[0] == inst.published()
