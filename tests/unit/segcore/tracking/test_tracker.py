"""The tracker: identities across frames, birth and death in seconds, the two passes, and a
state document that restores exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcore.tracking import Detection, Tracker, TrackerConfig, TrackerStateError

SIZE = (120, 160)  # H, W


def disc(cx: float, cy: float, r: float, score: float = 0.9, class_id: int = 0) -> Detection:
    yy, xx = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    m = ((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r).astype(np.uint8)
    rle = mask_utils.encode(np.asfortranarray(m))
    return Detection(
        (cx - r, cy - r, cx + r, cy + r),
        score,
        class_id,
        {"size": list(rle["size"]), "counts": rle["counts"].decode()},
    )


def walk(steps: int, fps: float, speed: float = 30.0) -> list[tuple[float, list[Detection]]]:
    """Two discs crossing the frame in opposite directions (speed: pixels per second)."""
    out = []
    for k in range(steps):
        t = k / fps
        out.append((t, [disc(20 + speed * t, 40, 12), disc(140 - speed * t, 80, 12, class_id=1)]))
    return out


def test_identities_stay_and_start_at_one() -> None:
    tracker = Tracker()
    seen = [tracker.update(dets, t) for t, dets in walk(40, 15.0)]
    assert seen[0] == [1, 2]  # the stream's first frame confirms at once
    assert all(ids == [1, 2] for ids in seen)


@pytest.mark.parametrize("fps", [2.0, 15.0])
def test_crossing_paths_of_one_class_keep_their_identities(fps: float) -> None:
    """Two discs of the same class pass each other on one line; the motion model keeps
    them apart where their boxes overlap."""
    tracker = Tracker()
    answers = []
    for k in range(int(4 * fps)):
        t = k / fps
        a, b = disc(20 + 35 * t, 60, 10), disc(140 - 35 * t, 64, 10)
        answers.append(tracker.update([a, b], t))
    assert answers[0] == [1, 2]
    assert all(ids == [1, 2] for ids in answers)


def test_birth_after_min_hits_and_ids_never_reused() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3))
    assert tracker.update([disc(30, 30, 10)], 0.0) == [1]
    assert tracker.update([disc(31, 30, 10), disc(120, 90, 10)], 0.1) == [1, None]
    assert tracker.update([disc(32, 30, 10), disc(120, 90, 10)], 0.2) == [1, None]
    assert tracker.update([disc(33, 30, 10), disc(120, 90, 10)], 0.3) == [1, 2]
    # Track 1 leaves for good; a newcomer where it was gets a new id, never 1 again.
    for k in range(4, 30):
        tracker.update([disc(120, 90, 10)], k / 10)
    late = [tracker.update([disc(33, 30, 10), disc(120, 90, 10)], 3.0 + k / 10) for k in range(3)]
    assert late[-1] == [3, 2]


@pytest.mark.parametrize("fps", [2.0, 15.0])
def test_death_is_measured_in_seconds(fps: float) -> None:
    """An object unseen for 1 s comes back with its identity, unseen for 2 s with a new one,
    at 2 fps as at 15 fps (max_age_s = 1.5)."""
    for gap_s, expected in ((1.0, 1), (2.0, 2)):
        tracker = Tracker(TrackerConfig(min_hits=1))
        t = 0.0
        while t < 1.0:
            tracker.update([disc(60, 60, 15)], t)
            t += 1 / fps
        last = t - 1 / fps
        for k in range(1, round(gap_s * fps)):
            tracker.update([], last + k / fps)
        assert tracker.update([disc(60, 60, 15)], last + gap_s) == [expected]


def test_dropped_frames_are_a_longer_step() -> None:
    tracker = Tracker()
    for k in range(10):
        assert tracker.update([disc(20 + 4 * k, 60, 12)], k / 10) == [1]
    # Five frames dropped: the disc moved on at the same speed meanwhile.
    assert tracker.update([disc(20 + 4 * 15, 60, 12)], 1.5) == [1]


def test_low_score_detections_continue_tracks_but_start_none() -> None:
    tracker = Tracker()
    for k in range(5):
        tracker.update([disc(40 + k, 60, 12)], k / 10)
    # Partly hidden: the score drops below high_score; the second pass keeps the identity.
    assert tracker.update([disc(45, 60, 12, score=0.35)], 0.5) == [1]
    # A low-score detection where no track is never starts one.
    assert tracker.update([disc(46, 60, 12), disc(130, 20, 8, score=0.35)], 0.6) == [1, None]
    assert tracker.update([disc(47, 60, 12), disc(130, 20, 8, score=0.35)], 0.7) == [1, None]


def test_classes_are_not_matched_across() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    assert tracker.update([disc(60, 60, 15, class_id=0)], 0.0) == [1]
    assert tracker.update([disc(60, 60, 15, class_id=2)], 0.1) == [2]


def test_state_restores_exactly() -> None:
    frames = walk(30, 15.0) + [(2.0 + k / 15, [disc(70, 60, 11)]) for k in range(10)]
    whole = Tracker()
    expected = [whole.update(dets, t) for t, dets in frames]
    for cut in (1, 7, 29, 33):
        first = Tracker()
        got = [first.update(dets, t) for t, dets in frames[:cut]]
        doc = json.loads(json.dumps(first.state()))  # through JSON, as Redis keeps it
        second = Tracker(state=doc)
        got += [second.update(dets, t) for t, dets in frames[cut:]]
        assert got == expected
        assert second.state() == whole.state()


def test_state_is_compact() -> None:
    tracker = Tracker()
    for t, dets in walk(20, 15.0):
        tracker.update(dets, t)
    text = json.dumps(tracker.state(), separators=(",", ":"))
    assert len(text) < 2000, text  # two tracks: boxes, filters and last masks


def one_track(**changes: object) -> dict:
    """A state document of one track, with ``changes`` to the track or (``next``) the doc."""
    track = {
        "id": 1,
        "c": 0,
        "h": 1,
        "f": 0,
        "l": 0,
        "lost": False,
        "m": [0] * 8,
        "p": [[1] * 4] * 3,
        "mask": None,
    }
    doc = {"v": 1, "t": 0.0, "next": changes.pop("next", 2), "frames": 1}
    return {**doc, "tracks": [{**track, **changes}]}


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"v": 9}, "version"),
        ({"v": 1, "t": 0.0, "next": 2, "frames": 1}, "malformed"),
        ({"v": 1, "t": 0.0, "next": 2, "frames": 1, "tracks": [{"id": 1, "m": [1]}]}, "malformed"),
        (one_track(m=[0, 0, 0, 0, 0, 0, "x", 0]), "malformed"),
        (one_track(m=[0, 0, 0, 0, 0, 0, float("inf"), 0]), "finite"),
        (one_track(mask={"size": [4, 4], "counts": 3}), "mask"),
        (one_track(id=0), "positive"),
        (one_track(next=1), "at or above 'next'"),
    ],
)
def test_bad_state_is_refused_by_name(doc: dict, words: str) -> None:
    with pytest.raises(TrackerStateError, match=words):
        Tracker(state=doc)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="finite"):
        Tracker().update([Detection((0, 0, float("nan"), 1), 0.9, 0)], 0.0)
    with pytest.raises(ValueError, match="min_hits"):
        TrackerConfig(min_hits=0)
