"""StreamTracks: identities in events, continued from a stored document by another worker,
redeliveries left alone. The store here is a dict (the real one: tests/integration)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from pycocotools import mask as mask_utils

from segcore.tracking.analytics import Line, Zone
from services.common.events import Instance, MaskEvent
from services.common.redis import entry_id
from services.segment.tracks import StreamTracks, TrackedFrame

SIZE = (120, 160)


def instance(cx: float, cy: float, r: float = 12.0, label: str = "disc") -> Instance:
    yy, xx = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    m = ((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r).astype(np.uint8)
    rle = mask_utils.encode(np.asfortranarray(m))
    return Instance(label, 0, 0.9, (cx - r, cy - r, cx + r, cy + r), SIZE, rle["counts"].decode())


def event(seq: int, stream_id: str = "cam") -> MaskEvent:
    t = seq / 10
    return MaskEvent(
        stream_id,
        seq,
        t,
        1_700_000_000.0 + t,
        0.0,
        "m",
        SIZE[1],
        SIZE[0],
        (instance(20 + 4 * seq, 40), instance(140 - 4 * seq, 90)),
    )


class Store:
    """What the publish script keeps: the document of the newest new event per stream."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}
        self.loads = 0

    def load(self, ids: list[str]) -> dict[str, bytes | None]:
        self.loads += 1
        return {i: self.docs.get(i) for i in ids}

    def publish(self, frames: list[TrackedFrame]) -> None:
        for frame in frames:
            if frame.document is not None:
                self.docs[frame.event.stream_id] = frame.document


def no_geometry(_stream_id: str) -> tuple[list, list]:
    return [], []


def ids_of(frames: list[TrackedFrame]) -> list[list[int | None]]:
    return [[i.track_id for i in f.event.instances] for f in frames]


def test_events_get_track_ids_and_documents() -> None:
    store = Store()
    tracks = StreamTracks(store.load, no_geometry)
    frames = tracks.track([event(0), event(1)])
    assert ids_of(frames) == [[1, 2], [1, 2]]
    doc = json.loads(frames[1].document or b"")
    assert doc["last"] == entry_id(event(1).captured_at, 1)
    assert doc["tracker"]["next"] == 3


def test_another_worker_continues_from_the_document() -> None:
    whole = StreamTracks(Store().load, no_geometry)
    expected = ids_of(whole.track([event(k) for k in range(20)]))
    store = Store()
    first = StreamTracks(store.load, no_geometry)
    got = []
    for k in range(0, 9, 3):
        frames = first.track([event(k), event(k + 1), event(k + 2)])
        store.publish(frames)
        got += ids_of(frames)
    # The first worker is killed after frame 8; frames 6..8 are redelivered to the second.
    second = StreamTracks(store.load, no_geometry)
    redelivered = second.track([event(6), event(7), event(8)])
    assert [f.document for f in redelivered] == [None, None, None]
    for k in range(9, 20):
        frames = second.track([event(k)])
        store.publish(frames)
        got += ids_of(frames)
    assert got == expected


def test_a_batch_is_tracked_in_entry_order_per_stream() -> None:
    tracks = StreamTracks(Store().load, no_geometry)
    frames = tracks.track([event(2, "a"), event(0, "b"), event(1, "a"), event(0, "a")])
    assert [(f.event.stream_id, f.event.seq) for f in frames] == [
        ("a", 2),
        ("b", 0),
        ("a", 1),
        ("a", 0),
    ]
    assert all(f.document is not None for f in frames)
    assert json.loads(frames[0].document or b"")["last"] == entry_id(event(2).captured_at, 2)


def test_forget_rereads_the_store() -> None:
    store = Store()
    tracks = StreamTracks(store.load, no_geometry)
    store.publish(tracks.track([event(0)]))
    assert store.loads == 1
    tracks.track([event(1)])
    assert store.loads == 1
    tracks.forget(["cam"])
    store.publish(tracks.track([event(1)]))  # the store's copy is after frame 0: 1 is new
    assert store.loads == 2
    tracks.clear()
    assert tracks.track([event(1)])[0].document is None  # now after frame 1: a redelivery


def test_an_unreadable_document_starts_again_without_reusing_ids() -> None:
    store = Store()
    store.docs["cam"] = json.dumps({"v": 1, "last": "x", "tracker": {"next": 7}}).encode()
    frames = StreamTracks(store.load, no_geometry).track([event(0)])
    assert ids_of(frames) == [[7, 8]]
    store.docs["cam"] = b"\xff not json"
    assert ids_of(StreamTracks(store.load, no_geometry).track([event(0)])) == [[1, 2]]


def test_line_crossings_come_with_frame_fields() -> None:
    line = Line("middle", (0.5, 0.0), (0.5, 1.0))
    tracks = StreamTracks(Store().load, lambda _s: ([], [line]))
    frames = tracks.track([event(k) for k in range(20)])
    bodies = [b for f in frames for b in f.analytics_bodies]
    assert [(b["track_id"], b["direction"]) for b in bodies] == [(1, "backward"), (2, "forward")]
    first = bodies[0]
    assert first["type"] == "line.cross" and first["line"] == "middle"
    assert first["stream_id"] == "cam" and isinstance(first["seq"], int)
    counts = json.loads(frames[-1].document or b"")["counts"]
    assert counts["lines"]["middle"] == {"forward": 1, "backward": 1}


def test_a_garbage_document_of_any_shape_starts_again() -> None:
    """Whatever the key holds (an entry id that is no string, JSON nested past the parser's
    depth, an id counter past what JSON readers hold exactly), the stream's tracks start
    again: the worker never fails on it."""
    store = Store()
    tracks = {"v": 1, "t": None, "next": 1, "frames": 0, "tracks": []}
    garbage = [
        json.dumps({"v": 1, "last": last, "tracker": tracks}).encode()
        for last in (5, True, None, ["1-0"], {"ms": 1})
    ]
    garbage += [b"[" * 100_000 + b"]" * 100_000, b'{"v": 1, "last": ' + b"[" * 100_000]
    for raw in garbage:
        store.docs["cam"] = raw
        assert ids_of(StreamTracks(store.load, no_geometry).track([event(0)])) == [[1, 2]]
    store.docs["cam"] = json.dumps({"v": 1, "last": "x", "tracker": {"next": 2**60}}).encode()
    assert ids_of(StreamTracks(store.load, no_geometry).track([event(0)])) == [[1, 2]]


def decoded_at(seq: int, captured_at: float, stream_id: str = "cam") -> MaskEvent:
    """Frame ``seq`` of a file at 10 fps (pts seq/10) decoded at ``captured_at``."""
    return dataclasses.replace(event(seq, stream_id), captured_at=captured_at)


def test_a_file_read_as_fast_as_it_decodes_is_tracked_on_its_own_time() -> None:
    """A file's frames are captured when they are decoded: a burst, then a wait while the
    model catches up. Tracked on that clock, a 5 s wait would kill every track and a burst
    would make every motion look 100 times as fast; a stream timed by its media (a file not
    played in real time) is tracked on its pts, so it gets the identities, zone visits and
    dwell of the same frames captured in real time."""
    zone = Zone("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
    geometry = lambda _s: ([zone], [])  # noqa: E731
    live = StreamTracks(Store().load, geometry)
    expected = live.track([event(k) for k in range(20)])
    store = Store()
    media = StreamTracks(store.load, geometry, media_time=lambda _s: True)
    got: list[TrackedFrame] = []
    at = 1_700_000_000.0
    for start in range(0, 20, 4):  # a burst of 4 frames 1 ms apart, then a 5 s wait
        batch = [
            decoded_at(k, at + 5 * start + 0.001 * (k - start)) for k in range(start, start + 4)
        ]
        frames = media.track(batch)
        store.publish(frames)
        got += frames
        if start == 8:  # another worker takes over, from the document
            media = StreamTracks(store.load, geometry, media_time=lambda _s: True)
    assert ids_of(got) == ids_of(expected)
    assert ids_of(got)[-1] == [1, 2]
    summary = [
        (b["type"], b["track_id"], b.get("dwell_s")) for f in got for b in f.analytics_bodies
    ]
    assert summary == [
        (b["type"], b["track_id"], b.get("dwell_s")) for f in expected for b in f.analytics_bodies
    ]
    assert any(kind == "zone.exit" for kind, _, _ in summary)
    # The events keep the capture times they came with.
    assert [f.event.captured_at for f in got][4] == at + 20


def test_a_looping_file_going_back_to_its_start_keeps_its_time_growing() -> None:
    media = StreamTracks(Store().load, no_geometry, media_time=lambda _s: True)
    media.track([decoded_at(k, 1_700_000_000.0 + 0.001 * k) for k in range(10)])
    again = dataclasses.replace(decoded_at(0, 1_700_000_000.5), seq=10)  # pts 0 again
    doc = json.loads(media.track([again])[0].document or b"")
    assert doc["tracker"]["t"] > 1_700_000_000.0 + 0.9  # after the pass's last frame


def test_a_stream_whose_zones_and_lines_are_all_removed_still_has_its_counts() -> None:
    """Its frames report the (now empty) counts, so the metrics drop the occupancy of the
    zones it had, as when some of them are removed."""
    zone = Zone("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)))
    geometry: list[Zone] = [zone]
    tracks = StreamTracks(Store().load, lambda _s: (list(geometry), []))
    assert tracks.track([event(0)])[0].counts == {
        "zones": {"left": {"occupancy": 1, "entries": 1, "exits": 0}},
        "lines": {},
    }
    geometry.clear()
    assert tracks.track([event(1)])[0].counts == {"zones": {}, "lines": {}}


def test_a_frame_of_a_stream_the_registry_no_longer_holds_leaves_its_state_alone() -> None:
    """A frame still in flight when its stream is removed is not tracked (no document is
    written), so its zone and line counts are there when the stream is added again, instead
    of the counts of a stream without zones."""
    line = Line("middle", (0.5, 0.0), (0.5, 1.0))
    registered = [True]
    store = Store()
    tracks = StreamTracks(store.load, lambda _s: ([], [line]) if registered[0] else None)
    store.publish(tracks.track([event(k) for k in range(20)]))
    before = json.loads(store.docs["cam"])["counts"]
    assert before["lines"]["middle"] == {"forward": 1, "backward": 1}
    registered[0] = False  # removed: its last frame still comes
    late = tracks.track([event(20)])
    assert late[0].document is None and late[0].analytics == ()
    store.publish(late)
    registered[0] = True  # added again
    frames = tracks.track([event(21)])
    assert json.loads(frames[0].document or b"")["counts"] == before
    # A worker that first meets the stream while it is removed keeps nothing of it either.
    registered[0] = False
    fresh = StreamTracks(store.load, lambda _s: ([], [line]) if registered[0] else None)
    assert fresh.track([event(22)])[0].document is None
    registered[0] = True
    counts = json.loads(fresh.track([event(23)])[0].document or b"")["counts"]
    assert counts == before
