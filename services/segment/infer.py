"""Model inference and mask events, shared by the segment workers and ``segstream run``:
a batch of RGB frames in, one :class:`MaskEvent` per frame out, masks COCO-RLE encoded at
each source frame's own resolution.

The path, every step on the model's device (the API the workers build on; stable):

- :func:`frames_batch`: (h, w, 3) uint8 frames -> one (B, h, w, 3) uint8 tensor on the
  device (a list of (h, w, 3) when sizes differ); nothing is converted to float here.
- :func:`infer`: the model's serving entry (``segcore.models.frames.infer_frames``): resize
  and normalisation in one ``preprocess_frames`` pass, the network, then detections with
  their masks in compact form (low-resolution masks with the frame region they span, never
  full-size float planes).
- :func:`paste_compact`: one frame's compact masks pasted and thresholded at the source
  frame's size in one ``paste_masks(threshold=0.5)`` call -> (N, H, W) bool on the device.
- :func:`instances_of` / :func:`to_events`: the pasted masks encoded by ``masks_to_rle`` on
  the device (on CUDA only the run boundaries reach the host), boxes scaled to the source
  frame, and the events.

Sizes: a ``frame_size`` is (width, height), as in the frame headers and PIL; arrays and
tensors keep their own (height, width) order (``rgb.shape[:2]``, an ``input_size``, a
mask's ``mask_size``, as COCO's RLE ``size``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

import segcore
from segcore.labels import BACKGROUND
from segcore.models.frames import infer_frames
from segcore.ops import masks_to_rle, paste_masks
from services.common.events import Instance, MaskEvent

#: A pasted mask's pixel is foreground when its probability is above this.
MASK_THRESHOLD = 0.5


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


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def frames_batch(
    rgbs: Sequence[np.ndarray | Tensor], device: torch.device | str
) -> Tensor | list[Tensor]:
    """(h, w, 3) uint8 RGB frames (arrays or tensors) on ``device``: one (B, h, w, 3) tensor
    when they share a size, else a list of (h, w, 3) tensors. Stays uint8 (a quarter of the
    bytes of a float copy cross to the device). A read-only or negatively strided array is
    copied first; any other is shared, not copied, on the CPU."""
    tensors = []
    for rgb in rgbs:
        if isinstance(rgb, np.ndarray):
            if not rgb.flags.writeable or any(stride < 0 for stride in rgb.strides):
                rgb = rgb.copy()
            rgb = torch.from_numpy(rgb)
        if rgb.dtype != torch.uint8 or rgb.dim() != 3 or rgb.shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3) uint8, got {tuple(rgb.shape)} {rgb.dtype}")
        tensors.append(rgb)
    if not tensors:
        raise ValueError("frames_batch: no frames")
    if all(t.shape == tensors[0].shape for t in tensors):
        return torch.stack(tensors).to(device, non_blocking=True)
    return [t.to(device, non_blocking=True) for t in tensors]


def infer(model: nn.Module, rgbs: Sequence[np.ndarray | Tensor]) -> list[dict[str, Tensor]]:
    """The model's outputs for (h, w, 3) uint8 RGB frames, at each frame's size, masks in
    compact form (``masks`` (N, 1, M, M) probabilities, ``mask_boxes`` (N, 4) the frame
    region each spans; ``segcore.models.frames``), left on the model's device."""
    return infer_frames(model, frames_batch(rgbs, model_device(model)), mask_format="compact")


def paste_compact(
    output: dict[str, Tensor], input_size: tuple[int, int], frame_size: tuple[int, int]
) -> Tensor:
    """One output's compact masks as (N, H, W) bool on their device at ``frame_size``
    (width, height), for an output of a frame of ``input_size`` (height, width): the
    ``mask_boxes`` scaled to the frame (masks spanning the whole frame cut down to their
    foreground by :func:`windows`), rounded to whole pixels, then
    ``paste_masks(padding=0, threshold=MASK_THRESHOLD)`` (one call per window size)."""
    width, height = frame_size
    in_h, in_w = input_size
    masks = output["masks"]
    scale = (width / in_w, height / in_h)
    edges = output["mask_boxes"] * output["mask_boxes"].new_tensor(scale * 2)
    groups = windows(masks, edges, MASK_THRESHOLD)
    pasted = []
    for _, group, region in groups:
        rounded = torch.round(region)
        # paste_masks takes boxes with inclusive corners: the last pixel is the end edge - 1.
        boxes = rounded - rounded.new_tensor([0.0, 0.0, 1.0, 1.0])
        pasted.append(
            paste_masks(group, boxes, (height, width), padding=0, threshold=MASK_THRESHOLD)[:, 0]
        )
    if len(groups) == 1:
        return pasted[0]
    order = torch.cat([index for index, _, _ in groups])
    return torch.cat(pasted)[torch.argsort(order)]


def windows(masks: Tensor, edges: Tensor, threshold: float) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(N, 1, M, M) masks spanning one shared region ``edges`` (N, 4 xyxy, frame pixels,
    exclusive ends) cut to square windows of their foreground, grouped by window side:
    (indices into the N, (n, 1, m, m) windows, (n, 4) the regions they span). A window
    holds every cell above ``threshold`` and one cell more on each side (a bilinear sample
    is above the threshold only if one of its taps is, and past the margin cell the mask's
    cells are at most the threshold too), so pasting it gives the whole mask's pixels.

    Windows start on cells whose edges fall on whole pixels (for a region of L pixels,
    multiples of M / gcd(M, L) cells) and their sides are multiples of that step, so that
    each pasted pixel samples the very positions the whole mask's would: the same mask,
    pixel for pixel. (Windows cut freely, their edges rounded to whole pixels, move the
    sampling by up to half a pixel: mask IoU 0.987 on the demo's shapes at 1080p.)

    Masks with regions of their own (Mask R-CNN's boxes: already the instance's size) come
    back as they are, in one group. YOLACT's masks span the frame: pasting windows costs
    the instances' areas, not the frame's, per instance."""
    n, m_full = masks.shape[0], masks.shape[-1]
    everything = torch.arange(n, device=masks.device)
    whole = [(everything, masks, edges)]
    if n == 0 or not bool((edges == edges[0]).all()):
        return whole
    # A region scaled to the frame is whole pixels but for float rounding.
    if float((edges[0] - edges[0].round()).abs().max()) > 1e-3:
        return whole
    edges = edges.round()
    x1, y1, x2, y2 = edges[0].tolist()
    span = (x2 - x1, y2 - y1)
    if min(span) <= 0:
        return whole
    steps = [m_full // math.gcd(m_full, int(length)) for length in span]
    step = math.lcm(*steps)
    above = masks[:, 0] > threshold
    index = torch.arange(m_full, device=masks.device)
    starts, ends = [], []
    for axis, present in enumerate((above.any(1), above.any(2))):  # x, then y
        first = torch.where(present, index, m_full).amin(1)
        last = torch.where(present, index, -1).amax(1)
        first = torch.where(last >= 0, first, 0)
        lo = (first - 1).clamp(min=0)
        starts.append(lo - lo % steps[axis])
        ends.append((last + 2).clamp(min=1, max=m_full))
    need = torch.maximum(ends[0] - starts[0], ends[1] - starts[1])
    sides = ((need + step - 1) // step * step).clamp(max=m_full)
    if bool((sides >= m_full).all()):
        return whole
    pixels = edges.new_tensor([span[0] / m_full, span[1] / m_full])
    groups = []
    for side in sorted(set(sides.tolist())):
        members = torch.nonzero(sides == side)[:, 0]
        # M - side is a multiple of every step, so the clamped starts stay on whole pixels.
        at = torch.stack([starts[0][members], starts[1][members]], 1).clamp(max=m_full - side)
        offsets = torch.arange(side, device=masks.device)
        cols = (at[:, 0:1] + offsets)[:, None, :]
        rows = (at[:, 1:2] + offsets)[:, :, None]
        picked = masks[members[:, None, None], 0, rows, cols]
        low = edges[members, :2] + at.to(edges.dtype) * pixels
        region = torch.cat([low, low + side * pixels], 1)
        groups.append((members, picked[:, None], region))
    return groups


def instances_of(
    output: dict[str, Tensor],
    class_names: list[str],
    min_score: float,
    input_size: tuple[int, int],
    frame_size: tuple[int, int] | None = None,
) -> tuple[Instance, ...]:
    """Instances of one compact output (of a frame of ``input_size`` (height, width))
    scoring at least ``min_score``: masks pasted at ``frame_size`` (width, height; the
    input's own when None) and RLE-encoded there, boxes (xyxy) scaled to it."""
    in_h, in_w = input_size
    width, height = frame_size if frame_size is not None else (in_w, in_h)
    keep = output["scores"] >= min_score
    kept = {key: output[key][keep] for key in ("masks", "mask_boxes", "boxes", "scores", "labels")}
    boxes = kept["boxes"].float() * kept["boxes"].new_tensor([width / in_w, height / in_h] * 2)
    rles = masks_to_rle(paste_compact(kept, input_size, (width, height))) if keep.any() else []
    # Events count classes from 0 (segcore.labels); a model with a background label counts it.
    offset = 1 if class_names and class_names[0] == BACKGROUND else 0
    out = []
    for label, score, box, rle in zip(
        kept["labels"].tolist(), kept["scores"].tolist(), boxes.tolist(), rles, strict=True
    ):
        counts = rle["counts"]
        assert isinstance(counts, bytes)
        out.append(
            Instance(
                label=class_names[label] if 0 <= label < len(class_names) else str(label),
                class_id=int(label) - offset,
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
    """One event per item, from the model's compact output for it (:func:`infer`)."""
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
                instances=instances_of(output, class_names, min_score, (h, w), (width, height)),
            )
        )
    return events


def load_model(model_name: str, device: str) -> nn.Module:
    """The registry's served build of ``model_name`` for ``device``, warmed up (and logged:
    ``model built as served``) before it returns: what the segment worker and ``segstream
    run`` serve."""
    return segcore.build_served(model_name, device=device)


def class_names(model: nn.Module) -> list[str]:
    return list(getattr(model, "class_names", []) or [])
