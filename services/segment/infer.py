"""Model inference and mask events, shared by the segment worker and ``segstream run``:
a batch of RGB frames in, one :class:`MaskEvent` per frame out, masks COCO-RLE encoded (the
compiled ``masks_to_rle`` when built) at each source frame's own resolution.

Sizes: a ``frame_size`` is (width, height), as in the frame headers and PIL; arrays and
tensors keep their own (height, width) order (``rgb.shape[:2]``, a mask's ``mask_size``, as
COCO's RLE ``size``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcore.images import to_float_chw
from segcore.ops import masks_to_rle
from services.common.events import Instance, MaskEvent


@dataclass(frozen=True)
class Item:
    """One frame to segment. ``frame_size`` (width, height) is the source frame's, when
    ``rgb`` was shrunk from it (None: ``rgb``'s own); the event's masks and boxes are at that
    size."""

    stream_id: str
    seq: int
    pts: float
    captured_at: float
    rgb: np.ndarray  # (h, w, 3) uint8
    frame_size: tuple[int, int] | None = None


def infer(model: nn.Module, rgbs: list[np.ndarray]) -> list[dict[str, Tensor]]:
    """The model's outputs (torchvision's dicts) for (h, w, 3) uint8 RGB frames."""
    device = next(model.parameters()).device
    images = [to_float_chw(rgb, device) for rgb in rgbs]
    with torch.inference_mode():
        return list(model(images))


def instances_of(
    output: dict[str, Tensor],
    class_names: list[str],
    min_score: float,
    frame_size: tuple[int, int] | None = None,
) -> tuple[Instance, ...]:
    """Instances of one output scoring at least ``min_score``; masks ((N, 1, h, w) float
    probabilities in the output) RLE-encoded at ``frame_size`` (width, height; the output's
    own when None), boxes (xyxy in input pixels) scaled to it."""
    keep = output["scores"] >= min_score
    masks = output["masks"][keep]
    boxes = output["boxes"][keep].float()
    in_h, in_w = masks.shape[-2:]
    width, height = frame_size if frame_size is not None else (int(in_w), int(in_h))
    if (height, width) != (in_h, in_w):
        if len(masks):
            masks = F.interpolate(masks, size=(height, width), mode="bilinear")
        boxes = boxes * boxes.new_tensor([width / in_w, height / in_h] * 2)
    binary = masks[:, 0] > 0.5
    rles = masks_to_rle(binary.cpu()) if len(binary) else []
    out = []
    for label, score, box, rle in zip(
        output["labels"][keep].tolist(),
        output["scores"][keep].tolist(),
        boxes.tolist(),
        rles,
        strict=True,
    ):
        counts = rle["counts"]
        assert isinstance(counts, bytes)
        out.append(
            Instance(
                label=class_names[label] if 0 <= label < len(class_names) else str(label),
                class_id=int(label),
                score=float(score),
                box=(box[0], box[1], box[2], box[3]),
                mask_size=(int(height), int(width)),
                mask_counts=counts.decode("ascii"),
            )
        )
    return tuple(out)


def to_events(
    items: list[Item],
    outputs: list[dict[str, Tensor]],
    class_names: list[str],
    model_name: str,
    min_score: float,
) -> list[MaskEvent]:
    """One event per item, from the model's output for it."""
    events = []
    for item, output in zip(items, outputs, strict=True):
        h, w = item.rgb.shape[:2]
        width, height = item.frame_size or (w, h)
        events.append(
            MaskEvent(
                stream_id=item.stream_id,
                seq=item.seq,
                pts=item.pts,
                captured_at=item.captured_at,
                published_at=time.time(),
                model=model_name,
                width=width,
                height=height,
                instances=instances_of(output, class_names, min_score, (width, height)),
            )
        )
    return events


def class_names(model: nn.Module) -> list[str]:
    return list(getattr(model, "class_names", []) or [])
