"""The demo model with the tracker on scenes of the tracking camera that training never
drew: identities kept (IDF1) and lines' crossings counted as the scenes' truth has them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import segcore
from segcore.evaluation import TRACKING_SEEDS, TrackingResult, evaluate_tracking

SEEDS = TRACKING_SEEDS[:6]


@pytest.fixture(scope="module")
def result(compiled_ops: None) -> Iterator[TrackingResult]:
    # One intra-op thread: the model's detections either way, and on a shared machine two
    # threads that wait on each other take several times longer.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield evaluate_tracking(segcore.build("yolact_r18_demo"), SEEDS, num_frames=120)
    finally:
        torch.set_num_threads(threads)


def test_identities_are_kept(result: TrackingResult) -> None:
    assert result.overall.idf1 >= 0.85, result.table()
    assert len(result.scenes) == len(SEEDS)
    # Every scene has objects coming and going, occlusions and crossings to get right.
    assert all(s.scores.truth_ids >= 5 for s in result.scenes), result.table()


def test_line_crossings_are_counted(result: TrackingResult) -> None:
    counted, true, off = result.crossings()
    assert true >= 60, result.table()
    # The goal is the crossings counted within 5% of the truth; these seeds give 79 of 84
    # (6.0%), each line and direction off by 5 in all (docs/benchmarks.md: the misses are
    # identities lost while an object crosses a line fully hidden). Held here at 7.5%, so the
    # count cannot get worse unnoticed, both in total and line by line.
    assert abs(counted - true) <= 0.075 * true, result.table()
    assert off <= 0.075 * true, result.table()
