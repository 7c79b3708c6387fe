"""YOLACT's Fast NMS, with the IoU matrix never built.

YOLACT computes, per class, the (k, k) IoU matrix of its top-k candidates, keeps the part
above the diagonal and drops a candidate whose column maximum exceeds the threshold. The
compiled ``fast_nms_keep`` makes the same decision per candidate in one launch over all
classes, reading only the boxes; sorting and the final selection use torch's sort and top-k.
"""

from __future__ import annotations

import torch
from torch import Tensor

import cuda_ext
from segcore.ops import _checks


def jaccard(box_a: Tensor, box_b: Tensor) -> Tensor:
    """(..., A, 4) x (..., B, 4) -> (..., A, B) IoU, with YOLACT's arithmetic."""
    max_xy = torch.min(box_a[..., :, None, 2:], box_b[..., None, :, 2:])
    min_xy = torch.max(box_a[..., :, None, :2], box_b[..., None, :, :2])
    inter = torch.clamp(max_xy - min_xy, min=0).prod(-1)
    area_a = ((box_a[..., 2] - box_a[..., 0]) * (box_a[..., 3] - box_a[..., 1]))[..., :, None]
    area_b = ((box_b[..., 2] - box_b[..., 0]) * (box_b[..., 3] - box_b[..., 1]))[..., None, :]
    return inter / (area_a + area_b - inter)


def _keep_reference(
    boxes: Tensor, scores: Tensor, iou_threshold: float, conf_threshold: float
) -> Tensor:
    iou = jaccard(boxes, boxes).triu_(diagonal=1)
    iou_max = iou.max(dim=1).values
    return (iou_max <= iou_threshold) & (scores > conf_threshold)


def _fast_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float,
    top_k: int,
    conf_threshold: float,
    max_detections: int,
    compiled: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    num_classes, n = scores.shape
    k = min(top_k, n)
    if num_classes == 0 or k == 0:
        empty = boxes.new_zeros((0,))
        return boxes.new_zeros((0, 4)), empty, empty.long(), empty.long()
    sorted_scores, idx = scores.sort(1, descending=True)
    idx = idx[:, :k].contiguous()
    sorted_scores = sorted_scores[:, :k].contiguous()
    candidates = boxes[idx.reshape(-1)].view(num_classes, k, 4)
    if compiled:
        keep = torch.ops.cuda_ext.fast_nms_keep(
            candidates, sorted_scores, float(iou_threshold), float(conf_threshold)
        )
    else:
        keep = _keep_reference(candidates, sorted_scores, iou_threshold, conf_threshold)
    classes = torch.arange(num_classes, device=boxes.device)[:, None].expand_as(keep)[keep]
    kept_scores = sorted_scores[keep]
    kept_boxes = candidates[keep]
    kept_idx = idx[keep]
    kept_scores, order = kept_scores.sort(0, descending=True)
    order = order[:max_detections]
    return kept_boxes[order], kept_scores[:max_detections], classes[order], kept_idx[order]


def fast_nms_reference(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    conf_threshold: float = 0.05,
    max_detections: int = 100,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """YOLACT's fast_nms as written, in PyTorch: see :func:`fast_nms` (returns indices too)."""
    return _fast_nms(
        boxes, scores, iou_threshold, top_k, conf_threshold, max_detections, compiled=False
    )


def fast_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    conf_threshold: float = 0.05,
    max_detections: int = 100,
    *,
    return_indices: bool = False,
) -> tuple[Tensor, ...]:
    """YOLACT's Fast NMS.

    Per class: the ``top_k`` candidates by score; a candidate is dropped when its IoU with a
    higher-scored one of its class exceeds ``iou_threshold``; then those scoring
    ``<= conf_threshold`` are dropped; then the best ``max_detections`` across classes,
    sorted by score.

    Args:
        boxes: (N, 4) float, xyxy, shared by every class.
        scores: (C, N) float, the score of each box for each class.

    Returns:
        ``(boxes (D, 4), scores (D,), classes (D,) int64)``; with ``return_indices`` also
        ``indices (D,) int64`` into the N input boxes (to gather mask coefficients).
    """
    op = "fast_nms"
    _checks.tensor(op, "boxes", boxes)
    _checks.tensor(op, "scores", scores)
    _checks.shape(op, "boxes", boxes, "(N, 4)", boxes.dim() == 2 and boxes.shape[-1] == 4)
    _checks.shape(
        op,
        "scores",
        scores,
        f"(C, {boxes.shape[0]})",
        scores.dim() == 2 and scores.shape[1] == boxes.shape[0],
    )
    _checks.floating(op, "boxes", boxes)
    _checks.floating(op, "scores", scores)
    if boxes.dtype != scores.dtype:
        raise ValueError(f"{op}: boxes is {boxes.dtype} but scores is {scores.dtype}")
    _checks.same_device(op, boxes=boxes, scores=scores)
    if top_k < 0 or max_detections < 0:
        raise ValueError(f"{op}: top_k and max_detections must be >= 0")
    out = _fast_nms(
        boxes,
        scores,
        iou_threshold,
        top_k,
        conf_threshold,
        max_detections,
        compiled=cuda_ext.supports(boxes),
    )
    return out if return_indices else out[:3]
