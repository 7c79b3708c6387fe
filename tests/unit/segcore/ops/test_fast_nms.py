"""fast_nms: the compiled keep kernel against YOLACT's Fast NMS written in PyTorch, and
against a plain per-class loop; neither reference uses the implementation's helpers."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from segcore.ops import fast_nms, fast_nms_reference


def random_case(n: int, classes: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 400
    wh = torch.rand(n, 2, generator=gen) * 120 + 1
    boxes = torch.cat([xy, xy + wh], dim=1).to(dtype)
    scores = torch.rand(classes, n, generator=gen).to(dtype)
    return boxes, scores


def yolact_jaccard(box_a: torch.Tensor, box_b: torch.Tensor) -> torch.Tensor:
    """YOLACT's box_utils.jaccard transcribed: (n, A, 4) x (n, B, 4) -> (n, A, B)."""
    max_xy = torch.min(box_a[:, :, None, 2:], box_b[:, None, :, 2:])
    min_xy = torch.max(box_a[:, :, None, :2], box_b[:, None, :, :2])
    inter = torch.clamp(max_xy - min_xy, min=0)
    inter = inter[:, :, :, 0] * inter[:, :, :, 1]
    area_a = ((box_a[:, :, 2] - box_a[:, :, 0]) * (box_a[:, :, 3] - box_a[:, :, 1]))[:, :, None]
    area_b = ((box_b[:, :, 2] - box_b[:, :, 0]) * (box_b[:, :, 3] - box_b[:, :, 1]))[:, None, :]
    return inter / (area_a + area_b - inter)


def yolact_fast_nms(boxes, scores, iou_threshold, top_k, conf_threshold, max_detections):
    """YOLACT's fast_nms (second_threshold=True) transcribed: the IoU matrix, triu, max."""
    scores, idx = scores.sort(1, descending=True)
    idx = idx[:, :top_k].contiguous()
    scores = scores[:, :top_k]
    num_classes, num_dets = idx.size()
    boxes = boxes[idx.view(-1), :].view(num_classes, num_dets, 4)
    iou = yolact_jaccard(boxes, boxes)
    iou.triu_(diagonal=1)
    iou_max, _ = iou.max(dim=1)
    keep = iou_max <= iou_threshold
    keep *= scores > conf_threshold
    classes = torch.arange(num_classes)[:, None].expand_as(keep)
    classes, boxes, scores = classes[keep], boxes[keep], scores[keep]
    scores, order = scores.sort(0, descending=True)
    order = order[:max_detections]
    return boxes[order], scores[:max_detections], classes[order]


@pytest.mark.parametrize(
    ("n", "classes", "top_k", "iou", "conf", "max_det"),
    [
        (300, 80, 200, 0.5, 0.05, 100),
        (50, 5, 200, 0.3, 0.5, 10),
        (1000, 3, 100, 0.7, 0.0, 300),
        (1, 4, 200, 0.5, 0.05, 100),
        (10_000, 2, 200, 0.5, 0.05, 100),
    ],
)
def test_equals_yolact(
    compiled_ops: None, n: int, classes: int, top_k: int, iou: float, conf: float, max_det: int
) -> None:
    boxes, scores = random_case(n, classes, seed=n)
    expected = yolact_fast_nms(boxes, scores, iou, top_k, conf, max_det)
    for impl in (fast_nms, fast_nms_reference):
        got = impl(boxes, scores, iou, top_k, conf, max_det)[:3]
        for g, e in zip(got, expected, strict=True):
            assert torch.equal(g, e)


def loop_fast_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    top_k: int,
    conf_threshold: float,
    max_detections: int,
) -> list[tuple[float, int, int]]:
    """Fast NMS as a plain loop per class, in Python numbers: of each class's ``top_k``
    candidates by score, one is dropped when its IoU with any better-scored candidate of its
    class (dropped or not) exceeds the threshold, or when its score is not above
    ``conf_threshold``; then the best ``max_detections`` of all classes. Returns
    ``(score, class, box index)`` best first."""
    box_list, score_rows = boxes.tolist(), scores.tolist()

    def iou(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union

    kept = []
    for c, row in enumerate(score_rows):
        order = sorted(range(len(row)), key=lambda i: -row[i])[:top_k]
        for rank, i in enumerate(order):
            suppressed = any(iou(box_list[j], box_list[i]) > iou_threshold for j in order[:rank])
            if not suppressed and row[i] > conf_threshold:
                kept.append((row[i], c, i))
    kept.sort(key=lambda item: -item[0])
    return kept[:max_detections]


@pytest.mark.parametrize(
    ("n", "classes", "top_k", "iou", "conf", "max_det"),
    [
        (300, 6, 100, 0.5, 0.0625, 100),
        (120, 3, 200, 0.25, 0.5, 20),
        (400, 2, 50, 0.75, 0.0, 500),
    ],
)
def test_equals_a_per_class_loop(
    compiled_ops: None, n: int, classes: int, top_k: int, iou: float, conf: float, max_det: int
) -> None:
    # Integer corners and distinct scores: the loop's float64 arithmetic and the op's float32
    # reach the same decisions at thresholds a float32 holds exactly (no ties, no rounding
    # across a threshold).
    gen = torch.Generator().manual_seed(n)
    xy = torch.randint(0, 400, (n, 2), generator=gen)
    wh = torch.randint(1, 120, (n, 2), generator=gen)
    boxes = torch.cat([xy, xy + wh], dim=1).float()
    scores = (torch.randperm(classes * n, generator=gen).float() / (classes * n)).view(classes, n)
    expected = loop_fast_nms(boxes, scores, iou, top_k, conf, max_det)
    assert len(expected) > 0
    for got in (
        fast_nms(boxes, scores, iou, top_k, conf, max_det, return_indices=True),
        fast_nms_reference(boxes, scores, iou, top_k, conf, max_det),
    ):
        kept, kept_scores, kept_classes, indices = got
        assert kept_scores.tolist() == [s for s, _, _ in expected]
        assert kept_classes.tolist() == [c for _, c, _ in expected]
        assert indices.tolist() == [i for _, _, i in expected]
        assert torch.equal(kept, boxes[indices])


def test_indices_point_at_the_input_boxes(compiled_ops: None) -> None:
    boxes, scores = random_case(200, 10, seed=3)
    kept, kept_scores, classes, indices = fast_nms(boxes, scores, return_indices=True)
    assert torch.equal(boxes[indices], kept)
    assert torch.equal(scores[classes, indices], kept_scores)


def test_kept_boxes_do_not_overlap_within_a_class(compiled_ops: None) -> None:
    boxes, scores = random_case(400, 4, seed=5)
    kept, kept_scores, classes = fast_nms(boxes, scores, 0.4, 200, 0.05, 1000)
    assert (kept_scores[:-1] >= kept_scores[1:]).all()
    for c in classes.unique():
        same = kept[classes == c]
        iou = box_iou(same, same).fill_diagonal_(0)
        # Fast NMS may also drop boxes whose suppressor was itself dropped, never keep overlaps.
        assert (iou <= 0.4).all()


def test_no_boxes_and_no_classes(compiled_ops: None) -> None:
    for boxes, scores in (
        (torch.zeros(0, 4), torch.zeros(3, 0)),
        (torch.zeros(5, 4), torch.zeros(0, 5)),
    ):
        out = fast_nms(boxes, scores)
        assert [t.shape[0] for t in out] == [0, 0, 0]


def test_zero_area_boxes_follow_yolact(compiled_ops: None) -> None:
    # Two empty boxes have IoU 0/0 = NaN; YOLACT's max propagates it and drops the later one.
    boxes = torch.tensor([[5.0, 5, 5, 5], [5.0, 5, 5, 5], [0.0, 0, 10, 10], [20.0, 20, 20, 30]])
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    expected = yolact_fast_nms(boxes, scores, 0.5, 200, 0.05, 100)
    got = fast_nms(boxes, scores, 0.5, 200, 0.05, 100)
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g, e)


def test_non_contiguous_and_float64(compiled_ops: None) -> None:
    boxes, scores = random_case(120, 6, seed=9, dtype=torch.float64)
    strided_scores = scores.t().contiguous().t()
    assert not strided_scores.is_contiguous()
    expected = yolact_fast_nms(boxes, scores, 0.5, 200, 0.05, 100)
    for g, e in zip(fast_nms(boxes, strided_scores), expected, strict=True):
        assert torch.equal(g, e)


def test_compiled_keep_matches_the_iou_matrix(compiled_ops: None) -> None:
    boxes, scores = random_case(150, 3, seed=2)
    sorted_scores, idx = scores.sort(1, descending=True)
    cand = boxes[idx.reshape(-1)].view(3, 150, 4)
    keep = torch.ops.cuda_ext.fast_nms_keep(cand, sorted_scores, 0.5, 0.1)
    iou_max = yolact_jaccard(cand, cand).triu_(diagonal=1).max(dim=1).values
    assert torch.equal(keep, (iou_max <= 0.5) & (sorted_scores > 0.1))


@pytest.mark.parametrize(
    ("boxes", "scores", "message"),
    [
        (torch.zeros(5, 3), torch.zeros(2, 5), "boxes must be"),
        (torch.zeros(5, 4), torch.zeros(2, 4), "scores must be"),
        (torch.zeros(5, 4, dtype=torch.int64), torch.zeros(2, 5), "boxes must be floating"),
        (torch.zeros(5, 4), torch.zeros(2, 5, dtype=torch.float64), "boxes is torch.float32"),
    ],
)
def test_rejects_bad_input(boxes: torch.Tensor, scores: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fast_nms(boxes, scores)
