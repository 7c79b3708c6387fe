"""Zone and line analytics: enter, exit, dwell and loiter decided on masks, crossings with
their direction, jitter on a line that counts nothing, tracks forgotten after the tracker's
death time, and a state document that continues exactly where it was written."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcore.tracking import Analytics, AnalyticsStateError, Line, Tracked, Zone

H, W = 100, 200
SIZE = (H, W)
RIGHT_HALF = Zone("right", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)))
ACROSS = Line("across", (0.1, 0.5), (0.9, 0.5))  # horizontal: its left is above it


def rect(x0: int, y0: int, x1: int, y1: int) -> dict[str, object]:
    """The RLE of the pixels [y0, y1) x [x0, x1), counts as text (as events carry them)."""
    mask = np.zeros(SIZE, np.uint8)
    mask[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(SIZE), "counts": rle["counts"].decode()}


def box_at(track_id: int, x0: int, y0: int, x1: int, y1: int, label: str = "car") -> Tracked:
    return Tracked(
        track_id, label, 2, (float(x0), float(y0), float(x1), float(y1)), rect(x0, y0, x1, y1)
    )


def point(track_id: int, x: float, y: float) -> Tracked:
    """A small box centred on the normalised point (x, y), without a mask."""
    cx, cy = x * W, y * H
    return Tracked(track_id, "person", 0, (cx - 2, cy - 2, cx + 2, cy + 2), None)


def types(events: list[dict[str, object]]) -> list[object]:
    return [e["type"] for e in events]


def test_enter_exit_dwell_and_counts() -> None:
    analytics = Analytics([RIGHT_HALF])
    assert analytics.update([box_at(7, 10, 10, 30, 30)], 0.0, SIZE) == []
    entered = analytics.update([box_at(7, 120, 10, 140, 30)], 1.5, SIZE)
    assert entered == [
        {
            "type": "zone.enter",
            "track_id": 7,
            "label": "car",
            "class_id": 2,
            "zone": "right",
            "occupancy": 1,
            "count": 1,
        }
    ]
    assert analytics.update([box_at(7, 130, 10, 150, 30)], 2.0, SIZE) == []
    assert analytics.counts()["zones"]["right"] == {"occupancy": 1, "entries": 1, "exits": 0}
    exited = analytics.update([box_at(7, 10, 10, 30, 30)], 4.25, SIZE)
    assert types(exited) == ["zone.exit"]
    assert exited[0]["dwell_s"] == 2.75 and exited[0]["occupancy"] == 0
    assert analytics.counts() == {
        "zones": {"right": {"occupancy": 0, "entries": 1, "exits": 1}},
        "lines": {},
    }


def test_membership_is_the_share_of_the_mask_not_of_the_box() -> None:
    """An L-shaped mask whose box is mostly in the zone but whose pixels are mostly out."""
    mask = np.zeros(SIZE, np.uint8)
    mask[0:100, 60:100] = 1  # a tall bar left of the zone: 4000 pixels
    mask[90:100, 100:180] = 1  # a thin foot inside it: 800 pixels
    rle = mask_utils.encode(np.asfortranarray(mask))
    shape = {"size": list(SIZE), "counts": rle["counts"]}  # bytes counts are taken too
    item = Tracked(1, "car", 2, (60.0, 0.0, 180.0, 100.0), shape)
    assert Analytics([RIGHT_HALF]).update([item], 0.0, SIZE) == []
    low = Zone("right", RIGHT_HALF.polygon, min_fraction=0.15)  # 800 / 4800 = 0.167
    assert types(Analytics([low]).update([item], 0.0, SIZE)) == ["zone.enter"]


@pytest.mark.parametrize(("min_fraction", "enters"), [(0.4, True), (0.6, False)])
def test_min_fraction(min_fraction: float, enters: bool) -> None:
    zone = Zone("right", RIGHT_HALF.polygon, min_fraction=min_fraction)
    half_in = box_at(1, 90, 10, 110, 30)  # 10 of its 20 columns right of x = 100
    events = Analytics([zone]).update([half_in], 0.0, SIZE)
    assert types(events) == (["zone.enter"] if enters else [])


def test_a_share_hovering_at_the_threshold_enters_once() -> None:
    """Shares of 0.55 and 0.45 in turn around min_fraction 0.5: in at the first, and the
    hysteresis keeps it in; a share well below makes it exit."""
    analytics = Analytics([RIGHT_HALF])
    events = []
    for frame in range(20):
        x0 = 89 if frame % 2 == 0 else 91  # 11 or 9 of 20 columns in the zone
        events += analytics.update([box_at(1, x0, 10, x0 + 20, 30)], frame * 0.2, SIZE)
    assert types(events) == ["zone.enter"]
    assert types(analytics.update([box_at(1, 87, 10, 107, 30)], 5.0, SIZE)) == ["zone.exit"]


def test_box_is_measured_when_there_is_no_mask() -> None:
    inside = Tracked(3, "dog", 16, (150.0, 10.0, 170.0, 30.0), None)
    assert types(Analytics([RIGHT_HALF]).update([inside], 0.0, SIZE)) == ["zone.enter"]


def test_an_empty_frame_size_measures_nothing() -> None:
    inside = Tracked(3, "dog", 16, (150.0, 10.0, 170.0, 30.0), None)
    assert Analytics([RIGHT_HALF], [ACROSS]).update([inside], 0.0, (0, 0)) == []


def test_occupancy_counts_every_track_inside() -> None:
    analytics = Analytics([RIGHT_HALF])
    first = analytics.update([box_at(1, 120, 10, 140, 30), box_at(2, 150, 50, 170, 70)], 0.0, SIZE)
    assert [(e["track_id"], e["occupancy"], e["count"]) for e in first] == [(1, 1, 1), (2, 2, 2)]
    later = analytics.update([box_at(1, 120, 10, 140, 30), box_at(2, 10, 50, 30, 70)], 1.0, SIZE)
    assert [(e["type"], e["track_id"], e["occupancy"]) for e in later] == [("zone.exit", 2, 1)]


def test_loiter_once_per_visit() -> None:
    zone = Zone("right", RIGHT_HALF.polygon, loiter_s=3.0)
    analytics = Analytics([zone])
    inside, outside = box_at(1, 120, 10, 140, 30), box_at(1, 10, 10, 30, 30)
    events = []
    for t in (0.0, 1.0, 2.0, 3.5, 4.0, 10.0):
        events += analytics.update([inside], t, SIZE)
    assert types(events) == ["zone.enter", "zone.loiter"]
    assert events[1]["dwell_s"] == 3.5 and events[1]["occupancy"] == 1
    events = analytics.update([outside], 11.0, SIZE) + analytics.update([inside], 12.0, SIZE)
    for t in (13.0, 14.0, 15.0):
        events += analytics.update([inside], t, SIZE)
    assert types(events) == ["zone.exit", "zone.enter", "zone.loiter"]
    assert events[0]["dwell_s"] == 11.0


def test_a_vanished_track_exits_after_the_death_time() -> None:
    analytics = Analytics([RIGHT_HALF], forget_after_s=2.0)
    analytics.update([box_at(5, 120, 10, 140, 30)], 0.0, SIZE)
    analytics.update([box_at(5, 120, 10, 140, 30)], 1.0, SIZE)
    assert analytics.update([], 3.0, SIZE) == []  # unseen for 2 s: not dead yet
    assert analytics.counts()["zones"]["right"]["occupancy"] == 1
    gone = analytics.update([box_at(6, 10, 10, 30, 30)], 3.5, SIZE)
    assert gone == [
        {
            "type": "zone.exit",
            "track_id": 5,
            "label": "car",
            "class_id": 2,
            "zone": "right",
            "dwell_s": 1.0,  # up to when it was last seen
            "occupancy": 0,
        }
    ]
    assert "5" not in analytics.state()["tracks"]


def test_a_track_missed_for_a_moment_keeps_its_visit() -> None:
    analytics = Analytics([RIGHT_HALF], forget_after_s=2.0)
    events = analytics.update([box_at(5, 120, 10, 140, 30)], 0.0, SIZE)
    events += analytics.update([], 1.0, SIZE)
    events += analytics.update([box_at(5, 120, 10, 140, 30)], 2.5, SIZE)
    assert types(events) == ["zone.enter"]


def test_crossing_direction() -> None:
    """Down through a horizontal line a -> b (left to right) goes from its left to its
    right on screen: forward; back up: backward. The counts run per direction."""
    analytics = Analytics(lines=[ACROSS])
    events = []
    for t, y in enumerate((0.3, 0.45, 0.6, 0.7, 0.4, 0.2, 0.8)):
        events += analytics.update([point(1, 0.5, y)], float(t), SIZE)
    assert [(e["direction"], e["count"]) for e in events] == [
        ("forward", 1),
        ("backward", 1),
        ("forward", 2),
    ]
    assert events[0] == {
        "type": "line.cross",
        "track_id": 1,
        "label": "person",
        "class_id": 0,
        "line": "across",
        "direction": "forward",
        "count": 1,
    }
    assert analytics.counts()["lines"] == {"across": {"forward": 2, "backward": 1}}


def test_direction_of_a_vertical_line() -> None:
    """a -> b pointing down the screen: its right is the screen's left."""
    down = Line("down", (0.5, 0.0), (0.5, 1.0))
    analytics = Analytics(lines=[down])
    analytics.update([point(1, 0.7, 0.5)], 0.0, SIZE)
    events = analytics.update([point(1, 0.3, 0.5)], 1.0, SIZE)
    assert [e["direction"] for e in events] == ["forward"]


def test_passing_beside_the_segment_is_not_a_crossing() -> None:
    analytics = Analytics(lines=[ACROSS])
    events = analytics.update([point(1, 0.95, 0.3)], 0.0, SIZE)
    events += analytics.update([point(1, 0.95, 0.7)], 1.0, SIZE)  # past b's end
    events += analytics.update([point(1, 0.5, 0.7)], 2.0, SIZE)
    assert events == []
    events = analytics.update([point(1, 0.5, 0.3)], 3.0, SIZE)  # back through it
    assert [e["direction"] for e in events] == ["backward"]


def test_jitter_on_the_line_counts_nothing_and_leaving_it_counts_once() -> None:
    """A track standing on the line, its centre jittering across it by up to 0.8 % of the
    frame's height (under the 1 %-of-the-diagonal band), for 200 frames: no crossing. Its
    leaving on the far side is one crossing, however it wavered in between."""
    rng = random.Random(3)
    analytics = Analytics(lines=[ACROSS])
    events = analytics.update([point(1, 0.5, 0.3)], 0.0, SIZE)
    for frame in range(1, 201):
        y = 0.5 + rng.uniform(-0.008, 0.008)
        events += analytics.update([point(1, 0.5 + rng.uniform(-0.1, 0.1), y)], frame * 0.1, SIZE)
    assert events == []
    events = analytics.update([point(1, 0.5, 0.7)], 20.1, SIZE)
    assert [e["direction"] for e in events] == ["forward"]
    # Back on the line and out on the side it came from: it stays where it was.
    events = analytics.update([point(1, 0.5, 0.501)], 20.2, SIZE)
    events += analytics.update([point(1, 0.5, 0.8)], 20.3, SIZE)
    assert events == []


def test_a_track_first_seen_on_the_line_only_takes_a_side() -> None:
    analytics = Analytics(lines=[ACROSS])
    events = analytics.update([point(1, 0.5, 0.5)], 0.0, SIZE)
    events += analytics.update([point(1, 0.5, 0.8)], 1.0, SIZE)
    assert events == []
    assert [e["direction"] for e in analytics.update([point(1, 0.5, 0.2)], 2.0, SIZE)] == [
        "backward"
    ]


def test_sides_are_per_track() -> None:
    analytics = Analytics(lines=[ACROSS])
    analytics.update([point(1, 0.3, 0.2), point(2, 0.6, 0.8)], 0.0, SIZE)
    events = analytics.update([point(1, 0.3, 0.8), point(2, 0.6, 0.2)], 1.0, SIZE)
    assert [(e["track_id"], e["direction"]) for e in events] == [(1, "forward"), (2, "backward")]


def walk(seed: int, frames: int) -> list[list[Tracked]]:
    """Tracks wandering over the frame, through a zone and across two lines, appearing and
    vanishing: ``frames`` frames of tracked instances."""
    rng = random.Random(seed)
    positions: dict[int, list[float]] = {}
    next_id = 1
    out = []
    for _ in range(frames):
        if rng.random() < 0.2:
            positions[next_id] = [rng.uniform(10, 180), rng.uniform(10, 80)]
            next_id += 1
        for track_id in list(positions):
            if rng.random() < 0.03:
                del positions[track_id]
        frame = []
        for track_id, pos in positions.items():
            pos[0] = min(185.0, max(0.0, pos[0] + rng.uniform(-12, 12)))
            pos[1] = min(85.0, max(0.0, pos[1] + rng.uniform(-8, 8)))
            if rng.random() < 0.9:  # missed now and then
                x0, y0 = int(pos[0]), int(pos[1])
                frame.append(box_at(track_id, x0, y0, x0 + 15, y0 + 15, label=f"c{track_id % 3}"))
        out.append(frame)
    return out


ZONES = [
    RIGHT_HALF,
    Zone("corner", ((0.0, 0.0), (0.4, 0.0), (0.2, 0.6)), min_fraction=0.3, loiter_s=1.5),
]
LINES = [ACROSS, Line("down", (0.5, 0.0), (0.5, 1.0))]


@pytest.mark.parametrize("split", [1, 37, 120, 199])
def test_state_round_trip_continues_exactly(split: int) -> None:
    """One object through every frame, and one stopped at ``split``, its state written as
    JSON text and restored into a new object that goes on: the same events, the same state."""
    frames = walk(11, 200)
    whole = Analytics(ZONES, LINES, forget_after_s=1.0)
    expected = [whole.update(f, i * 0.2, SIZE) for i, f in enumerate(frames)]
    first = Analytics(ZONES, LINES, forget_after_s=1.0)
    got = [first.update(f, i * 0.2, SIZE) for i, f in enumerate(frames[:split])]
    text = json.dumps(first.state(), separators=(",", ":"))
    second = Analytics(ZONES, LINES, state=json.loads(text), forget_after_s=1.0)
    got += [second.update(f, i * 0.2, SIZE) for i, f in enumerate(frames[split:], split)]
    assert got == expected
    assert second.state() == whole.state() and second.counts() == whole.counts()
    kinds = {e["type"] for events in expected for e in events}
    assert kinds == {"zone.enter", "zone.exit", "zone.loiter", "line.cross"}  # all exercised


def test_restored_state_drops_what_is_no_longer_defined() -> None:
    analytics = Analytics(ZONES, LINES)
    analytics.update([box_at(1, 120, 10, 140, 30)], 0.0, SIZE)
    analytics.update([box_at(1, 120, 60, 140, 80)], 1.0, SIZE)
    restored = Analytics([RIGHT_HALF, Zone("new", RIGHT_HALF.polygon)], [], analytics.state())
    assert restored.counts() == {
        "zones": {
            "right": {"occupancy": 1, "entries": 1, "exits": 0},
            "new": {"occupancy": 0, "entries": 0, "exits": 0},
        },
        "lines": {},
    }
    assert list(restored.state()["tracks"]["1"][4]) == []


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"v": 2},
        {"v": 1},
        {"v": 1, "tracks": {"x": []}, "entries": {}, "exits": {}, "crossings": {}},
    ],
)
def test_a_bad_state_document_is_refused(doc: dict[str, object]) -> None:
    with pytest.raises(AnalyticsStateError, match="analytics state"):
        Analytics(ZONES, LINES, state=doc)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="zone names must be unique"):
        Analytics([RIGHT_HALF, RIGHT_HALF])


def test_counts_equal_the_crossings_of_the_noise_free_paths() -> None:
    """60 tracks swinging back and forth through the line (amplitudes 5-20 % of the frame,
    1-4 swings of 4-20 frames) with jitter (0.2 % of the frame) on every point: the counts by
    direction are exactly the crossings of the paths without jitter, from clear of the line to
    clear of it. Points of the clean paths are either on the line (within 1 % of the frame:
    inside the dead band of 1 % of the diagonal, jitter included) or clear of it (over
    3.5 %: outside it, jitter included); a path ending on the line has not crossed it."""
    rng = np.random.default_rng(5)
    analytics = Analytics(lines=[ACROSS])
    truth = {"forward": 0, "backward": 0}
    frames: list[list[Tracked]] = [[] for _ in range(200)]
    for track_id in range(1, 61):
        amplitude = rng.uniform(0.05, 0.2)
        period = rng.integers(4, 21)
        phase = rng.uniform(0, 2 * np.pi)
        x = rng.uniform(0.15, 0.85)
        length = int(rng.integers(1, 5) * period)
        start = int(rng.integers(0, 200 - length))
        offset = amplitude * np.sin(phase + 2 * np.pi * np.arange(length) / period)
        near = (np.abs(offset) > 0.01) & (np.abs(offset) < 0.035)
        offset[near] = np.sign(offset[near]) * 0.005  # onto the line
        clear = [float(np.sign(v)) for v in offset if abs(v) >= 0.035]
        for before, after in itertools.pairwise(clear):
            if before < 0 < after:
                truth["forward"] += 1  # downwards: from above (its left) to below
            elif after < 0 < before:
                truth["backward"] += 1
        for i, y in enumerate(0.5 + offset + rng.normal(0, 0.002, length)):
            frames[start + i].append(point(track_id, x + rng.normal(0, 0.002), float(y)))
    for t, items in enumerate(frames):
        analytics.update(items, t * 0.1, SIZE)
    assert truth["forward"] > 50 and truth["backward"] > 50
    assert analytics.counts()["lines"]["across"] == truth
