"""YOLACT's training losses (the official MultiBoxLoss), as functions of the predictions.

- B: smooth-L1 box regression of the positive priors (alpha 1.5);
- C: softmax confidence loss with online hard negative mining, 3 negatives per positive;
- M: binary cross-entropy of each positive's assembled mask against its object's mask,
  both cropped to the object's box and normalised by the box area (alpha 6.125);
- S: semantic segmentation auxiliary loss on P3 (alpha 1);
- I (YOLACT++, given ``maskiou_net``): smooth-L1 between the mask IoU branch's prediction
  and the mask's real IoU with its object (alpha 25).

Predictions are the model's raw outputs (``Yolact.predict`` in train mode): ``loc`` (B, P,
4), ``conf`` (B, P, C), ``mask`` (B, P, K), ``priors`` (P, 4), ``proto`` (B, K, h, w),
``segm`` (B, C - 1, h', w'). Targets per image: ``boxes`` (N, 4) xyxy in input pixels,
``labels`` (N,) int64 class indices into the model's ``class_names`` (0-based, as the
model's outputs), ``masks`` (N, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcore.models.yolact.box_utils import encode, jaccard, point_form, sanitize
from segcore.ops import assemble_masks
from segcore.ops.assemble_masks import crop_mask

POS_THRESH, NEG_THRESH = 0.5, 0.4
NEGPOS_RATIO = 3
BBOX_ALPHA, CONF_ALPHA, MASK_ALPHA, SEMANTIC_ALPHA, MASKIOU_ALPHA = 1.5, 1.0, 6.125, 1.0, 25.0
MASKS_TO_TRAIN = 100
DISCARD_MASK_AREA = 5 * 5


def match(truths: Tensor, labels: Tensor, priors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per prior: regression target (P, 4), class target (P,) (0 background, -1 neutral) and
    the index (P,) of its object, for ``truths`` (G, 4) relative xyxy. Every object keeps its
    best prior, as the official matcher forces."""
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
    """Cross-entropy over positives and the hardest negatives (3 per positive): ``conf``
    (B, P, C) logits, ``conf_t`` (B, P) class targets, ``pos`` (B, P) bool."""
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


@dataclass(frozen=True)
class Matched:
    """The targets matched to the priors, per image: ``loc`` (B, P, 4), ``conf`` (B, P),
    ``index`` (B, P) object of each prior; ``boxes`` relative xyxy and ``masks`` (N, h, w)
    binarised at prototype resolution, one entry per image."""

    loc: Tensor
    conf: Tensor
    index: Tensor
    boxes: list[Tensor]
    masks: list[Tensor]


def match_targets(
    priors: Tensor,
    proto_size: tuple[int, int],
    image_sizes: list[tuple[int, int]],
    targets: list[dict[str, Tensor]],
) -> Matched:
    """Match every image's objects to the priors (see :class:`Matched`); ``image_sizes`` are
    (height, width) of the input images, ``proto_size`` (h, w) of the prototypes."""
    loc_t, conf_t, idx_t, rel_boxes, masks_small = [], [], [], [], []
    for (h, w), target in zip(image_sizes, targets, strict=True):
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
            proto_size,
            mode="bilinear",
            align_corners=False,
        )[0]
        masks_small.append(small.gt(0.5).float())
    return Matched(
        torch.stack(loc_t), torch.stack(conf_t), torch.stack(idx_t), rel_boxes, masks_small
    )


@dataclass(frozen=True)
class MaskIoUSamples:
    """Inputs and targets of the mask IoU loss: masks (n, 1, h, w), their real IoU (n,) with
    their objects and their classes (n,), 0-based."""

    masks: Tensor
    ious: Tensor
    labels: Tensor


def mask_loss(
    preds: dict[str, Tensor], matched: Matched, pos: Tensor, *, collect_iou: bool
) -> tuple[Tensor, MaskIoUSamples | None]:
    """The summed cropped BCE of the positives' masks (at most ``MASKS_TO_TRAIN`` per image,
    drawn at random), and with ``collect_iou`` the mask IoU branch's training samples."""
    proto = preds["proto"]  # (B, K, h, w)
    mask_h, mask_w = proto.shape[-2:]
    loss_m = proto.new_zeros(())
    iou_inputs, iou_targets, iou_labels = [], [], []
    for b in range(pos.shape[0]):
        positives = torch.nonzero(pos[b]).squeeze(1)
        if positives.numel() > MASKS_TO_TRAIN:
            positives = positives[torch.randperm(positives.numel())[:MASKS_TO_TRAIN]]
        if positives.numel() == 0:
            continue
        objects = matched.index[b][positives]
        boxes = matched.boxes[b][objects]
        x1, x2 = sanitize(boxes[:, 0], boxes[:, 2], mask_w, padding=1)
        y1, y2 = sanitize(boxes[:, 1], boxes[:, 3], mask_h, padding=1)
        crop = torch.stack([x1, y1, x2, y2], dim=1)
        pred = assemble_masks(proto[b], preds["mask"][b][positives], crop)  # (n, h, w)
        truth = matched.masks[b][objects]
        inside = crop_mask(crop, mask_h, mask_w)
        bce = F.binary_cross_entropy(pred.clamp(0, 1), truth, reduction="none") * inside
        area = (boxes[:, 2] - boxes[:, 0]) * mask_w * (boxes[:, 3] - boxes[:, 1]) * mask_h
        loss_m = loss_m + (bce.sum(dim=(1, 2)) * (mask_h * mask_w) / area.clamp(min=1)).sum()
        if collect_iou:
            big = truth.sum(dim=(1, 2)) > DISCARD_MASK_AREA
            if big.any():
                binary = pred[big].detach().gt(0.5).float()
                inter = (binary * truth[big]).sum(dim=(1, 2))
                union = (binary + truth[big]).clamp(max=1).sum(dim=(1, 2))
                iou_inputs.append(pred[big].detach()[:, None])
                iou_targets.append(inter / union.clamp(min=1))
                iou_labels.append(matched.conf[b][positives][big] - 1)
    samples = None
    if iou_inputs:
        samples = MaskIoUSamples(
            torch.cat(iou_inputs), torch.cat(iou_targets), torch.cat(iou_labels)
        )
    return loss_m, samples


def semantic_loss(segm: Tensor, targets: list[dict[str, Tensor]]) -> Tensor:
    """Per-class BCE of ``segm`` (B, C - 1, h', w') logits against the objects' masks
    downsampled to P3, averaged over pixels and images."""
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
    return loss_s / seg_h / seg_w * SEMANTIC_ALPHA / len(targets)


def maskiou_loss(maskiou_net: nn.Module, samples: MaskIoUSamples | None, like: Tensor) -> Tensor:
    """Summed smooth-L1 of the branch's IoU for each sample's class against its real IoU
    (zero, shaped and typed as ``like``, without samples)."""
    if samples is None:
        return like.new_zeros(())
    predicted = maskiou_net(samples.masks)
    predicted = predicted.gather(1, samples.labels[:, None]).squeeze(1)
    return F.smooth_l1_loss(predicted, samples.ious, reduction="sum") * MASKIOU_ALPHA


def yolact_losses(
    preds: dict[str, Tensor],
    image_sizes: list[tuple[int, int]],
    targets: list[dict[str, Tensor]],
    *,
    maskiou_net: nn.Module | None = None,
) -> dict[str, Tensor]:
    """The losses of one batch (see the module docstring): ``loss_box``, ``loss_conf``,
    ``loss_mask``, ``loss_semantic``, and ``loss_maskiou`` when ``maskiou_net`` is given.
    ``image_sizes`` are the input images' (height, width), in which the targets' boxes are."""
    proto = preds["proto"]
    mask_h, mask_w = proto.shape[-2:]
    matched = match_targets(preds["priors"], (mask_h, mask_w), image_sizes, targets)
    pos = matched.conf > 0
    num_pos = pos.sum().clamp(min=1).float()
    losses = {
        "loss_box": F.smooth_l1_loss(preds["loc"][pos], matched.loc[pos], reduction="sum")
        * BBOX_ALPHA
        / num_pos,
        "loss_conf": ohem_conf_loss(preds["conf"], matched.conf, pos) / num_pos,
    }
    loss_m, samples = mask_loss(preds, matched, pos, collect_iou=maskiou_net is not None)
    losses["loss_mask"] = loss_m * MASK_ALPHA / mask_h / mask_w / num_pos
    losses["loss_semantic"] = semantic_loss(preds["segm"], targets)
    if maskiou_net is not None:
        losses["loss_maskiou"] = maskiou_loss(maskiou_net, samples, proto) / num_pos
    return losses
