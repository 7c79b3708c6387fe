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
    sorted_scores, idx, candidates = _top_candidates(boxes, scores, k)
    if compiled:
        keep = torch.ops.cuda_ext.fast_nms_keep(
            candidates, sorted_scores, float(iou_threshold), float(conf_threshold)
        )
    else:
        keep = _keep_reference(candidates, sorted_scores, iou_threshold, conf_threshold)
    # Kept candidates in the boolean mask's (row-major) order, sorted by score, then only the
    # best max_detections gathered, by index_select: integer or boolean indexing, or a
    # gather of every kept box, hands even a few thousand values to every torch thread on
    # CPU (milliseconds when the machine is loaded: bench/threads.py).
    flat = keep.view(-1).nonzero().squeeze(1)
    kept_scores, order = sorted_scores.view(-1).index_select(0, flat).sort(0, descending=True)
    chosen = flat.index_select(0, order[:max_detections])
    return (
        candidates.view(-1, 4).index_select(0, chosen),
        kept_scores[:max_detections],
        chosen.div(k, rounding_mode="floor"),
        idx.view(-1).index_select(0, chosen),
    )


# torch's CPU kernels hand work above this many values to every thread (at::internal::GRAIN_SIZE)
_TORCH_GRAIN = 32768


def _top_candidates(boxes: Tensor, scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per class, the k best scores (C, k), their box indices (C, k) and boxes (C, k, 4).

    On CPU the classes go in blocks of at most ``_TORCH_GRAIN`` values, so each sort and
    gather runs on the calling thread: for 80 classes x 2000 boxes, torch's sort (its copy and
    index fill) and the (C * k, 4) gather otherwise wake every thread, which costs more than
    they do when the machine is loaded (bench/threads.py).
    """
    num_classes, n = scores.shape
    # a block's sort holds rows * n scores, its gather rows * k * 4 coordinates
    rows = num_classes if boxes.device.type != "cpu" else max(1, _TORCH_GRAIN // max(n, 4 * k))
    if rows >= num_classes:
        sorted_scores, idx = scores.sort(1, descending=True)
        idx = idx[:, :k].contiguous()
        sorted_scores = sorted_scores[:, :k].contiguous()
        return sorted_scores, idx, boxes.index_select(0, idx.view(-1)).view(num_classes, k, 4)
    top = scores.new_empty((num_classes, k))
    idx = torch.empty((num_classes, k), dtype=torch.int64, device=scores.device)
    candidates = boxes.new_empty((num_classes, k, 4))
    for start in range(0, num_classes, rows):
        block = slice(start, start + rows)
        values, order = scores[block].sort(1, descending=True)
        top[block] = values[:, :k]
        idx[block] = order[:, :k]
        candidates[block] = boxes.index_select(0, idx[block].reshape(-1)).view(-1, k, 4)
    return top, idx, candidates


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
