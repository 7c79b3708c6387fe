"""The tracking metrics on hand-made sequences, against their definitions: CLEAR MOT's MOTA
and identity switches, IDF1 (Ristani et al. 2016) and HOTA (Luiten et al. 2020)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcore.evaluation import MIN_VISIBLE, FrameMatch, _frame_match, tracking_scores
from segcore.tracking import Tracked


def frame(truth: list[int], predicted: list[int], iou: list[list[float]]) -> FrameMatch:
    return FrameMatch(
        np.array(truth, np.int64),
        np.array(predicted, np.int64),
        np.array(iou, np.float64).reshape(len(truth), len(predicted)),
    )


def test_a_perfect_tracker_scores_one() -> None:
    # Two objects over ten frames, each followed by one track (ids of its own numbering).
    frames = [frame([1, 2], [7, 9], [[1.0, 0.0], [0.0, 1.0]]) for _ in range(10)]
    scores = tracking_scores([frames])
    assert scores.mota == 1.0 and scores.idf1 == 1.0 and scores.hota == pytest.approx(1.0)
    assert scores.id_switches == 0 and scores.misses == 0 and scores.false_positives == 0
    assert (scores.truth_objects, scores.truth_ids, scores.predicted_ids) == (20, 2, 2)


def test_a_new_id_halfway_is_one_switch() -> None:
    # One object, ten frames: track 1 on the first five, track 2 on the last five.
    frames = [frame([1], [1 if t < 5 else 2], [[1.0]]) for t in range(10)]
    scores = tracking_scores([frames])
    assert scores.id_switches == 1
    # MOTA = 1 - (FN + FP + IDSW) / GT = 1 - 1 / 10.
    assert scores.mota == pytest.approx(0.9)
    # IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN): the best one-to-one pairing keeps 5 frames.
    assert scores.idf1 == pytest.approx(2 * 5 / (2 * 5 + 5 + 5))
    # HOTA: every detection matches (DetA 1); each true positive's association score is
    # TPA / (TPA + FNA + FPA) = 5 / (5 + 5 + 0), so AssA = 0.5 and HOTA = sqrt(1 * 0.5).
    assert scores.hota == pytest.approx(math.sqrt(0.5))


def test_two_objects_swapping_ids_are_two_switches() -> None:
    same = [[1.0, 0.0], [0.0, 1.0]]
    swapped = [[0.0, 1.0], [1.0, 0.0]]
    frames = [frame([1, 2], [5, 6], same if t < 4 else swapped) for t in range(8)]
    scores = tracking_scores([frames])
    assert scores.id_switches == 2
    assert scores.idf1 == pytest.approx(0.5)
    assert scores.mota == pytest.approx(1 - 2 / 16)


def test_a_poor_mask_is_a_miss_and_a_false_positive() -> None:
    # IoU 0.4: below the 0.5 the CLEAR and identity metrics match at.
    frames = [frame([1], [3], [[0.4]]) for _ in range(4)]
    scores = tracking_scores([frames])
    assert (scores.misses, scores.false_positives) == (4, 4)
    assert scores.mota == pytest.approx(1 - 8 / 4)
    assert scores.idf1 == 0.0
    # HOTA still credits the overlap at its lower thresholds (0.05 .. 0.4: 8 of 19), where
    # detection and association are perfect.
    assert scores.hota == pytest.approx(8 / 19)


def test_misses_lower_mota_and_idf1() -> None:
    frames = [
        frame([1], [1] if t % 2 == 0 else [], [[1.0]] if t % 2 == 0 else [[]]) for t in range(10)
    ]
    scores = tracking_scores([frames])
    assert scores.misses == 5 and scores.id_switches == 0
    assert scores.mota == pytest.approx(0.5)
    assert scores.idf1 == pytest.approx(2 * 5 / (2 * 5 + 0 + 5))
    # DetA = TP / (TP + FN + FP) = 5 / 10; each true positive's association score is
    # TPA / (TPA + FNA + FPA) = 5 / (5 + 5 + 0) (the missed frames are the object's too):
    # AssA = 0.5 and HOTA = sqrt(0.5 * 0.5).
    assert scores.hota == pytest.approx(0.5)


def test_sequences_add_up() -> None:
    good = [frame([1], [1], [[1.0]]) for _ in range(6)]
    switched = [frame([1], [1 if t < 3 else 2], [[1.0]]) for t in range(6)]
    scores = tracking_scores([good, switched])
    assert scores.id_switches == 1 and scores.truth_objects == 12
    assert scores.mota == pytest.approx(1 - 1 / 12)
    # Identities are per sequence: object 1 of one is not object 1 of the other.
    assert scores.idf1 == pytest.approx(2 * 9 / (2 * 9 + 3 + 3))
    with pytest.raises(ValueError, match="no sequences"):
        tracking_scores([])


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def test_slivers_are_neither_required_nor_held_against_the_tracker() -> None:
    masks = np.zeros((2, 40, 40), bool)
    masks[0, 5:25, 5:25] = True  # well seen
    masks[1, 30:33, 30:40] = True  # a sliver of something mostly hidden
    target = {
        "ids": np.array([4, 8], np.int64),
        "masks": masks,
        "visible": np.array([1.0, MIN_VISIBLE / 2]),
    }
    on_sliver = np.zeros((40, 40), bool)
    on_sliver[30:34, 29:40] = True
    tracked = [
        Tracked(1, "disc", 0, (5, 5, 25, 25), _rle(masks[0])),
        Tracked(2, "disc", 0, (29, 30, 40, 34), _rle(on_sliver)),
    ]
    match = _frame_match(target, tracked)
    assert match.truth.tolist() == [4]
    assert match.predicted.tolist() == [1]
    assert match.iou.shape == (1, 1) and match.iou[0, 0] == pytest.approx(1.0)
    # Seen well enough, the same object is required and the prediction on it counts.
    target["visible"] = np.array([1.0, MIN_VISIBLE])
    match = _frame_match(target, tracked)
    assert match.truth.tolist() == [4, 8] and match.predicted.tolist() == [1, 2]
    assert match.iou[1, 1] == pytest.approx(30 / 44)
