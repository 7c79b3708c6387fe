"""The synthetic camera's identities and its tracking scenes: objects that enter and leave,
full occlusions, crossing paths, and line and zone ground truth that agrees with the
rendered masks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import shapely

from segcore.data import synthetic
from segcore.evaluation import TRACKING_SEEDS
from segcore.training import TRAIN_SEEDS, VAL_SEEDS

SEEDS = list(TRACKING_SEEDS[:6])

# sha256 over every frame, labels and masks of scene(seed, n, size), as rendered before the
# targets gained ids: a seed keeps rendering what it rendered (the demo model was trained
# and is tested on these scenes).
RENDERED = [
    (0, 6, (240, 320), "1bd38b90865b3686948cf81afe7eea9f44abdd2970da06bd7d389703d3ab94a7"),
    (7, 5, (96, 128), "ed201c1a20d68cc667a09b3f2d0e2212dadd4d9220d21459b9ba7593800377ff"),
    (10_000_003, 4, (240, 320), "14ed40747240ab0d5421f3f4fac100f4b4ecec7a2fc3d7c1209cb60406198659"),
    (123456, 3, (120, 160), "75c4ce2dc2fe8ae49d6615e95702373c810243b125b81f31afc88da2f4ecf4d9"),
]


@pytest.mark.parametrize(("seed", "frames", "size", "digest"), RENDERED)
def test_seeds_render_what_they_rendered(
    seed: int, frames: int, size: tuple[int, int], digest: str
) -> None:
    h = hashlib.sha256()
    for frame, target in synthetic.scene(seed, frames, size):
        h.update(frame.tobytes())
        h.update(target["labels"].tobytes())
        h.update(target["masks"].tobytes())
    assert h.hexdigest() == digest


def test_ids_follow_their_objects() -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        synthetic._background(rng, 120, 160)
        objects = synthetic._objects(rng, 120, 160)
        for t, (_, target) in enumerate(synthetic.scene(seed, 30, (120, 160))):
            ids = target["ids"]
            assert ids.dtype == np.int64 and len(ids) == len(target["labels"])
            assert len(set(ids.tolist())) == len(ids)
            for object_id, label, mask in zip(ids, target["labels"], target["masks"], strict=True):
                obj = objects[object_id - 1]
                assert obj.label == label
                # The mask lies where that object is drawn at frame t.
                alone = synthetic.render([obj], np.zeros((120, 160, 3), np.uint8), t)[1]
                assert not (mask & ~alone["masks"][0]).any()


def test_tracking_seeds_are_never_trained_on() -> None:
    for seeds in (TRAIN_SEEDS, VAL_SEEDS):
        assert TRACKING_SEEDS.start >= seeds.stop or TRACKING_SEEDS.stop <= seeds.start
    # Its own random stream: not the scene of the same seed.
    scene = synthetic.tracking_scene(SEEDS[0], 2)
    plain, _ = next(synthetic.scene(SEEDS[0], 1))
    assert not np.array_equal(scene.frames[0][0], plain)


@pytest.fixture(scope="module")
def scenes() -> list[synthetic.TrackingScene]:
    return [synthetic.tracking_scene(seed, 120) for seed in SEEDS]


def test_same_seed_same_tracking_scene(scenes: list[synthetic.TrackingScene]) -> None:
    again = synthetic.tracking_scene(SEEDS[0], 120)
    for (fa, ta), (fb, tb) in zip(scenes[0].frames, again.frames, strict=True):
        assert np.array_equal(fa, fb)
        assert all(np.array_equal(ta[k], tb[k]) for k in ("labels", "masks", "ids", "visible"))
    assert (again.crossings, again.visits, again.lines) == (
        scenes[0].crossings,
        scenes[0].visits,
        scenes[0].lines,
    )


def test_objects_enter_and_leave(scenes: list[synthetic.TrackingScene]) -> None:
    entering = leaving = 0
    for scene in scenes:
        seen = [set(target["ids"].tolist()) for _, target in scene.frames]
        for object_id in set().union(*seen):
            on = [t for t, ids in enumerate(seen) if object_id in ids]
            entering += on[0] > 0
            leaving += on[-1] < len(seen) - 1
    assert entering >= 2 * len(scenes) and leaving >= len(scenes)


def test_small_objects_pass_fully_behind_large_ones(
    scenes: list[synthetic.TrackingScene],
) -> None:
    for scene in scenes:
        assert scene.hidden, f"scene {scene.seed} has no full occlusion"
        longest = max(len(frames) for frames in scene.hidden.values())
        assert 3 <= longest <= 20
        for object_id, frames in scene.hidden.items():
            for t in frames:
                assert object_id not in scene.frames[t][1]["ids"]


def test_paths_cross(scenes: list[synthetic.TrackingScene]) -> None:
    # Two objects of one class overlapping on a frame: the case that tests identities.
    same_class = 0
    for scene in scenes:
        for _, target in scene.frames:
            boxes = [np.argwhere(m) for m in target["masks"]]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    if target["labels"][i] != target["labels"][j]:
                        continue
                    (ai, bi), (aj, bj) = (
                        (boxes[i].min(0), boxes[i].max(0)),
                        (
                            boxes[j].min(0),
                            boxes[j].max(0),
                        ),
                    )
                    same_class += bool((np.minimum(bi, bj) >= np.maximum(ai, aj)).all())
    assert same_class >= 10


def test_visible_is_the_seen_share_of_the_shape(scenes: list[synthetic.TrackingScene]) -> None:
    shares = np.concatenate([target["visible"] for _, target in scenes[0].frames])
    assert ((shares > 0) & (shares <= 1)).all()
    assert (shares > 0.97).mean() > 0.3 and (shares < 0.5).any()


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    yy, xx = np.nonzero(mask)
    return float(xx.mean() + 0.5), float(yy.mean() + 0.5)


def test_crossings_agree_with_the_masks(scenes: list[synthetic.TrackingScene]) -> None:
    checked = 0
    for scene in scenes:
        height, width = scene.size
        assert len(scene.crossings) >= 6
        assert all(c.line in {x.name for x in scene.lines} for c in scene.crossings)
        lines = {x.name: x for x in scene.lines}
        for crossing in scene.crossings:
            line = lines[crossing.line]
            sides = []
            for t in (crossing.frame - 3, crossing.frame + 2):
                if not 0 <= t < len(scene.frames):
                    break
                target = scene.frames[t][1]
                where = np.flatnonzero(target["ids"] == crossing.track_id)
                if not len(where) or target["visible"][where[0]] < 0.98:
                    break
                x, y = _centroid(target["masks"][where[0]])
                sides.append(synthetic._cross(line, x, y, width, height) > 0)
            if len(sides) == 2:
                checked += 1
                assert sides[0] != sides[1]
                assert sides[1] == (crossing.direction == "forward")
        # No object crosses a line twice: the paths are straight.
        keys = [(c.track_id, c.line) for c in scene.crossings]
        assert len(keys) == len(set(keys))
    assert checked >= 20
    counts = scenes[0].line_counts()
    assert sum(d["forward"] + d["backward"] for d in counts.values()) == len(scenes[0].crossings)


def _share(
    scene: synthetic.TrackingScene, inside: np.ndarray, t: int, object_id: int
) -> float | None:
    """The share of the object's mask on frame t inside the zone's pixels (None: unseen)."""
    target = scene.frames[t][1]
    where = np.flatnonzero(target["ids"] == object_id)
    if not len(where):
        return None
    mask = target["masks"][where[0]]
    return float((mask & inside).sum() / mask.sum())


def test_visits_agree_with_the_masks(scenes: list[synthetic.TrackingScene]) -> None:
    visits = 0
    for scene in scenes:
        height, width = scene.size
        (zone,) = scene.zones
        polygon = shapely.Polygon([(x * width, y * height) for x, y in zone.polygon])
        yy, xx = np.mgrid[0:height, 0:width] + 0.5
        inside = shapely.contains_xy(polygon, xx, yy)

        for visit in scene.visits:
            visits += 1
            assert _share(scene, inside, visit.enter, visit.track_id) >= zone.min_fraction - 0.05
            before = [_share(scene, inside, t, visit.track_id) for t in range(visit.enter)]
            seen_before = [s for s in before if s is not None]
            if seen_before:
                assert seen_before[-1] < zone.min_fraction + 0.05
            if visit.exit is not None:
                assert _share(scene, inside, visit.exit, visit.track_id) < zone.min_fraction + 0.05
                assert visit.dwell_frames(len(scene.frames)) == visit.exit - visit.enter
    assert visits >= len(scenes)


def test_bad_tracking_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        synthetic.tracking_scene(1, 1)
    with pytest.raises(ValueError, match="64x64"):
        synthetic.tracking_scene(1, 10, (32, 32))
