"""YOLACT's inference steps after the network (the official Detect and postprocess), as
functions of the raw predictions, run on segstream's ops: ``fast_nms`` (Fast NMS without
the IoU matrix) and ``assemble_masks`` (prototype combination, sigmoid and crop in one pass).

Predictions are the model's raw outputs (``Yolact.predict``): ``loc`` (B, P, 4), ``conf``
(B, P, C) logits with the background first, ``mask`` (B, P, K), ``priors`` (P, 4), ``proto``
(B, K, h, w). Post-processing runs in float32 whatever the network ran in (float16 on GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcore.models.frames import check_mask_format
from segcore.models.yolact.box_utils import decode, sanitize
from segcore.models.yolact.config import YolactConfig
from segcore.ops import assemble_masks, fast_nms


@dataclass(frozen=True)
class Candidates:
    """One image's detections after Fast NMS and the score threshold, best first: ``boxes``
    (D, 4) relative xyxy, ``scores`` (D,), ``classes`` (D,) 0-based int64, ``coeffs`` (D, K)."""

    boxes: Tensor
    scores: Tensor
    classes: Tensor
    coeffs: Tensor


def select_detections(preds: dict[str, Tensor], b: int, config: YolactConfig) -> Candidates:
    """Image ``b``'s detections: softmax scores without the background, priors whose best
    class passes ``nms_conf_thresh``, decoded boxes, Fast NMS, ``score_threshold``."""
    scores_all = F.softmax(preds["conf"][b].float(), dim=-1)[:, 1:].t()  # (C, P)
    keep = scores_all.max(dim=0).values > config.nms_conf_thresh
    boxes = decode(preds["loc"][b][keep].float(), preds["priors"][keep].float())
    boxes, scores, classes, index = fast_nms(
        boxes,
        scores_all[:, keep].contiguous(),
        config.nms_thresh,
        config.nms_top_k,
        float("-inf"),
        config.max_num_detections,
        return_indices=True,
    )
    confident = scores > config.score_threshold
    coeffs = preds["mask"][b][keep][index[confident]]
    return Candidates(boxes[confident], scores[confident], classes[confident], coeffs)


def prototype_masks(proto: Tensor, found: Candidates) -> Tensor:
    """``(D, h, w)`` masks at prototype resolution for ``proto`` (K, h, w): sigmoid of the
    coefficients' combination, cropped to each box widened by one prototype pixel."""
    ph, pw = proto.shape[-2:]
    x1, x2 = sanitize(found.boxes[:, 0], found.boxes[:, 2], pw, padding=1)
    y1, y2 = sanitize(found.boxes[:, 1], found.boxes[:, 3], ph, padding=1)
    crop = torch.stack([x1, y1, x2, y2], dim=1)
    return assemble_masks(proto, found.coeffs.to(proto.dtype), crop.to(proto.dtype))


def rescore_masks(maskiou_net: nn.Module, masks: Tensor, found: Candidates) -> Tensor:
    """YOLACT++'s ``mask_scores`` (D,): each score times the mask IoU branch's prediction for
    its class (the scores as they are when there is no mask)."""
    if not masks.shape[0]:
        return found.scores.clone()
    iou = maskiou_net(masks[:, None])
    return found.scores * iou.gather(1, found.classes[:, None]).squeeze(1)


def to_image(masks: Tensor, found: Candidates, size: tuple[int, int]) -> dict[str, Tensor]:
    """Masks resized to the image ``size`` (height, width) as ``(D, 1, H, W)`` probabilities
    and boxes as ``(D, 4)`` xyxy in image pixels, with ``scores`` and int64 ``labels``."""
    height, width = size
    if masks.shape[0]:
        masks = F.interpolate(masks[None], size, mode="bilinear", align_corners=False)[0]
    else:
        masks = masks.new_zeros((0, height, width))
    return {
        "boxes": _image_boxes(found, height, width),
        "scores": found.scores,
        "labels": found.classes.to(torch.int64),
        "masks": masks[:, None],
    }


def _image_boxes(found: Candidates, height: int, width: int) -> Tensor:
    bx1, bx2 = sanitize(found.boxes[:, 0], found.boxes[:, 2], width)
    by1, by2 = sanitize(found.boxes[:, 1], found.boxes[:, 3], height)
    return torch.stack([bx1, by1, bx2, by2], dim=1)


def to_compact(masks: Tensor, found: Candidates, size: tuple[int, int]) -> dict[str, Tensor]:
    """The compact form (``segcore.models.frames``) for an image of ``size`` (height,
    width): ``masks`` (D, 1, h, w) the cropped prototype-resolution masks, each spanning the
    whole image (``mask_boxes`` (D, 4) = (0, 0, width, height)), and ``boxes``, ``scores``,
    ``labels`` as :func:`to_image`. Resizing a mask over its span is :func:`to_image`'s."""
    height, width = size
    span = torch.tensor([0.0, 0.0, width, height], device=masks.device)
    return {
        "boxes": _image_boxes(found, height, width),
        "scores": found.scores,
        "labels": found.classes.to(torch.int64),
        "masks": masks[:, None].float(),
        "mask_boxes": span.expand(masks.shape[0], 4).contiguous(),
    }


def detect(
    preds: dict[str, Tensor],
    b: int,
    size: tuple[int, int],
    config: YolactConfig,
    maskiou_net: nn.Module | None = None,
    mask_format: str = "full",
) -> dict[str, Tensor]:
    """Image ``b``'s result for an input of ``size`` (height, width): ``boxes``, ``scores``,
    ``labels``, ``masks`` (full planes, :func:`to_image`; or compact, :func:`to_compact`, as
    ``mask_format`` says), and ``mask_scores`` with ``maskiou_net``."""
    check_mask_format(mask_format)
    found = select_detections(preds, b, config)
    masks = prototype_masks(preds["proto"][b], found)
    result: dict[str, Tensor] = {}
    if maskiou_net is not None:
        result["mask_scores"] = rescore_masks(maskiou_net, masks, found)
    masks_out = to_image if mask_format == "full" else to_compact
    result.update(masks_out(masks, found, size))
    return result
