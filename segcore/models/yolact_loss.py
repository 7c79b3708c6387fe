"""YOLACT's training losses (the official MultiBoxLoss), as functions of the predictions.

- B: smooth-L1 box regression of the positive priors (alpha 1.5);
- C: softmax confidence loss with online hard negative mining, 3 negatives per positive;
- M: binary cross-entropy of each positive's assembled mask against its object's mask,
  both cropped to the object's box and normalised by the box area (alpha 6.125);
- S: semantic segmentation auxiliary loss on P3 (alpha 1);
- I (YOLACT++): smooth-L1 between the mask IoU branch's prediction and the mask's real IoU
  with its object (alpha 25).

Targets per image: ``boxes`` (N, 4) xyxy in input pixels, ``labels`` (N,) int64 class
indices into the model's ``class_names`` (0-based, as the model's outputs), ``masks``
(N, H, W).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from segcore.ops import assemble_masks
from segcore.ops.assemble_masks import crop_mask
from segcore.ops.fast_nms import jaccard

if TYPE_CHECKING:
    from segcore.models.yolact import Yolact

POS_THRESH, NEG_THRESH = 0.5, 0.4
NEGPOS_RATIO = 3
BBOX_ALPHA, CONF_ALPHA, MASK_ALPHA, SEMANTIC_ALPHA, MASKIOU_ALPHA = 1.5, 1.0, 6.125, 1.0, 25.0
MASKS_TO_TRAIN = 100
DISCARD_MASK_AREA = 5 * 5


def point_form(priors: Tensor) -> Tensor:
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)


def encode(matched: Tensor, priors: Tensor) -> Tensor:
    """Inverse of ``yolact.decode`` (variances 0.1, 0.2)."""
    centre = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (0.1 * priors[:, 2:])
    size = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / 0.2
    return torch.cat([centre, size], 1)


def match(truths: Tensor, labels: Tensor, priors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per prior: regression target, class target (0 background, -1 neutral) and the index
    of its object. Every object keeps its best prior, as the official matcher forces."""
    overlaps = jaccard(truths, point_form(priors))  # (G, P)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    for _ in range(overlaps.shape[0]):
        best_prior_overlap, best_prior_idx = overlaps.max(1)
        j = int(best_prior_overlap.argmax())
        i = int(best_prior_idx[j])
        overlaps[:, i] = -1
        overlaps[j, :] = -1
        best_truth_overlap[i] = 2
        best_truth_idx[i] = j
    conf = labels[best_truth_idx] + 1  # 0 is the background
    conf[best_truth_overlap < POS_THRESH] = -1
    conf[best_truth_overlap < NEG_THRESH] = 0
    return encode(truths[best_truth_idx], priors), conf, best_truth_idx


def ohem_conf_loss(conf: Tensor, conf_t: Tensor, pos: Tensor) -> Tensor:
    """Cross-entropy over positives and the hardest negatives (3 per positive)."""
    num_classes = conf.shape[-1]
    flat = conf.reshape(-1, num_classes)
    background = torch.logsumexp(flat, dim=1) - flat[:, 0]
    background = background.view(conf.shape[0], -1).clone()
    background[pos] = 0
    background[conf_t < 0] = 0
    _, order = background.sort(1, descending=True)
    _, rank = order.sort(1)
    num_neg = torch.clamp(NEGPOS_RATIO * pos.long().sum(1, keepdim=True), max=pos.shape[1] - 1)
    neg = rank < num_neg
    neg[pos] = False
    neg[conf_t < 0] = False
    chosen = pos | neg
    return F.cross_entropy(conf[chosen], conf_t[chosen], reduction="sum") * CONF_ALPHA


def yolact_losses(
    model: Yolact, preds: dict[str, Tensor], images: list[Tensor], targets: list[dict[str, Tensor]]
) -> dict[str, Tensor]:
    priors = preds["priors"]
    proto = preds["proto"]  # (B, K, h, w)
    mask_h, mask_w = proto.shape[-2:]
    loc_t, conf_t, idx_t = [], [], []
    rel_boxes, masks_small = [], []
    for image, target in zip(images, targets, strict=True):
        h, w = image.shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=priors.device)
        boxes = target["boxes"].to(priors.device).float() / scale
        labels = target["labels"].to(priors.device).long()
        if boxes.shape[0] == 0:
            raise ValueError("yolact: every training image needs at least one object")
        loc, conf, idx = match(boxes, labels, priors)
        loc_t.append(loc)
        conf_t.append(conf)
        idx_t.append(idx)
        rel_boxes.append(boxes)
        small = F.interpolate(
            target["masks"].to(priors.device).float()[None],
            (mask_h, mask_w),
            mode="bilinear",
            align_corners=False,
        )[0]
        masks_small.append(small.gt(0.5).float())
    loc_t_all, conf_t_all = torch.stack(loc_t), torch.stack(conf_t)
    pos = conf_t_all > 0
    num_pos = pos.sum().clamp(min=1).float()
    losses = {
        "loss_box": F.smooth_l1_loss(preds["loc"][pos], loc_t_all[pos], reduction="sum")
        * BBOX_ALPHA
        / num_pos,
        "loss_conf": ohem_conf_loss(preds["conf"], conf_t_all, pos) / num_pos,
    }

    loss_m = proto.new_zeros(())
    iou_inputs, iou_targets, iou_labels = [], [], []
    for b in range(len(images)):
        positives = torch.nonzero(pos[b]).squeeze(1)
        if positives.numel() > MASKS_TO_TRAIN:
            positives = positives[torch.randperm(positives.numel())[:MASKS_TO_TRAIN]]
        if positives.numel() == 0:
            continue
        objects = idx_t[b][positives]
        boxes = rel_boxes[b][objects]
        x1 = torch.clamp(torch.minimum(boxes[:, 0], boxes[:, 2]) * mask_w - 1, min=0)
        x2 = torch.clamp(torch.maximum(boxes[:, 0], boxes[:, 2]) * mask_w + 1, max=mask_w)
        y1 = torch.clamp(torch.minimum(boxes[:, 1], boxes[:, 3]) * mask_h - 1, min=0)
        y2 = torch.clamp(torch.maximum(boxes[:, 1], boxes[:, 3]) * mask_h + 1, max=mask_h)
        crop = torch.stack([x1, y1, x2, y2], dim=1)
        pred = assemble_masks(proto[b], preds["mask"][b][positives], crop)  # (n, h, w)
        truth = masks_small[b][objects]
        inside = crop_mask(crop, mask_h, mask_w)
        bce = F.binary_cross_entropy(pred.clamp(0, 1), truth, reduction="none") * inside
        area = (boxes[:, 2] - boxes[:, 0]) * mask_w * (boxes[:, 3] - boxes[:, 1]) * mask_h
        loss_m = loss_m + (bce.sum(dim=(1, 2)) * (mask_h * mask_w) / area.clamp(min=1)).sum()
        if model.maskiou_net is not None:
            big = truth.sum(dim=(1, 2)) > DISCARD_MASK_AREA
            if big.any():
                binary = pred[big].detach().gt(0.5).float()
                inter = (binary * truth[big]).sum(dim=(1, 2))
                union = (binary + truth[big]).clamp(max=1).sum(dim=(1, 2))
                iou_inputs.append(pred[big].detach()[:, None])
                iou_targets.append(inter / union.clamp(min=1))
                iou_labels.append(conf_t[b][positives][big] - 1)
    losses["loss_mask"] = loss_m * MASK_ALPHA / mask_h / mask_w / num_pos

    segm = preds["segm"]  # (B, C - 1, h', w'), on P3
    seg_h, seg_w = segm.shape[-2:]
    loss_s = segm.new_zeros(())
    for b, target in enumerate(targets):
        with torch.no_grad():
            small = (
                F.interpolate(
                    target["masks"].to(segm.device).float()[None],
                    (seg_h, seg_w),
                    mode="bilinear",
                    align_corners=False,
                )[0]
                .gt(0.5)
                .float()
            )
            segment_t = torch.zeros_like(segm[b])
            for obj, label in enumerate(target["labels"].tolist()):
                segment_t[label] = torch.maximum(segment_t[label], small[obj])
        loss_s = loss_s + F.binary_cross_entropy_with_logits(segm[b], segment_t, reduction="sum")
    losses["loss_semantic"] = loss_s / seg_h / seg_w * SEMANTIC_ALPHA / len(images)

    if model.maskiou_net is not None:
        if iou_inputs:
            predicted = model.maskiou_net(torch.cat(iou_inputs))
            predicted = predicted.gather(1, torch.cat(iou_labels)[:, None]).squeeze(1)
            loss_i = F.smooth_l1_loss(predicted, torch.cat(iou_targets), reduction="sum")
        else:
            loss_i = proto.new_zeros(())
        losses["loss_maskiou"] = loss_i * MASKIOU_ALPHA / num_pos
    return losses
