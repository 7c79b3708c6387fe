"""RoIAlign over a feature pyramid in one pass: torchvision's ``MultiScaleRoIAlign``, fused.

torchvision assigns each box to a pyramid level (FPN's rule), then loops over the levels in
Python, gathering each level's boxes, calling ``roi_align`` and scattering the result back.
The compiled ``multiscale_roi_align`` pools every box from its own level in one launch, with
the same level mapping and scales (computed here exactly as torchvision does) and the same
sampling arithmetic; its backward is registered for training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

import cuda_ext
from segcore.ops import _checks


def infer_scales(
    features: Sequence[Tensor], image_shapes: Sequence[tuple[int, int]]
) -> list[float]:
    """Each level's scale, a power of two: torchvision's ``_setup_scales``."""
    if not image_shapes:
        raise ValueError("multiscale_roi_align: image_shapes must not be empty")
    max_h = max(s[0] for s in image_shapes)
    scales = []
    for feature in features:
        approx = float(feature.shape[-2]) / float(max_h)
        scales.append(2 ** float(torch.tensor(approx).log2().round()))
    return scales


def map_levels(
    boxes: Tensor,
    scales: Sequence[float],
    canonical_scale: int = 224,
    canonical_level: int = 4,
    eps: float = 1e-6,
) -> Tensor:
    """(N,) int64 level index of each box: torchvision's ``LevelMapper`` (FPN eq. 1)."""
    k_min = int(-torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item())
    k_max = int(-torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item())
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    s = torch.sqrt(area)
    target = torch.floor(
        canonical_level + torch.log2(s / canonical_scale) + torch.tensor(eps, dtype=s.dtype)
    )
    target = torch.clamp(target, min=k_min, max=k_max)
    return (target.to(torch.int64) - k_min).to(torch.int64)


def check_pyramid(op: str, features: Sequence[Tensor], boxes: Sequence[Tensor]) -> None:
    """Raise ValueError, naming ``op`` and the argument, unless ``features`` are one or more
    (B, C, H, W) floating levels sharing batch, channels, dtype and device, and ``boxes`` are
    B tensors (N_i, 4) of the features' dtype and device."""
    if not features:
        raise ValueError(f"{op}: features must hold at least one level")
    for i, f in enumerate(features):
        _checks.tensor(op, f"features[{i}]", f)
        _checks.shape(op, f"features[{i}]", f, "(B, C, H, W)", f.dim() == 4)
        _checks.floating(op, f"features[{i}]", f)
    first = features[0]
    for i, f in enumerate(features):
        if f.shape[:2] != first.shape[:2] or f.dtype != first.dtype or f.device != first.device:
            raise ValueError(
                f"{op}: features[{i}] must share batch, channels, dtype and device with "
                f"features[0]: {tuple(f.shape)} {f.dtype} {f.device} vs "
                f"{tuple(first.shape)} {first.dtype} {first.device}"
            )
    if len(boxes) != first.shape[0]:
        raise ValueError(f"{op}: boxes has {len(boxes)} entries for a batch of {first.shape[0]}")
    for i, b in enumerate(boxes):
        _checks.tensor(op, f"boxes[{i}]", b)
        _checks.shape(op, f"boxes[{i}]", b, "(N, 4)", b.dim() == 2 and b.shape[1] == 4)
        if b.dtype != first.dtype or b.device != first.device:
            raise ValueError(
                f"{op}: boxes[{i}] must match the features' dtype and device "
                f"({first.dtype} on {first.device}), got {b.dtype} on {b.device}"
            )


def to_rois(boxes: Sequence[Tensor]) -> Tensor:
    """(sum N_i, 5) rows (image index, x1, y1, x2, y2)."""
    ids = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat(ids), torch.cat(list(boxes))], dim=1)


def pooled_size(op: str, output_size: int | Sequence[int]) -> tuple[int, int]:
    """(Sh, Sw) of an ``output_size`` S or (Sh, Sw); ValueError naming ``op`` unless both
    are positive."""
    if isinstance(output_size, int):
        size = (output_size, output_size)
    elif len(output_size) == 2:
        size = (int(output_size[0]), int(output_size[1]))
    else:
        raise ValueError(f"{op}: output_size must be S or (Sh, Sw), got {output_size}")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"{op}: output_size must be positive, got {output_size}")
    return size


def assign_levels(
    features: Sequence[Tensor], boxes: Sequence[Tensor], image_shapes: Sequence[tuple[int, int]]
) -> tuple[list[float], Tensor, Tensor]:
    """torchvision's bookkeeping: each level's scale, the RoIs (image index, box) and each
    RoI's level."""
    scales = infer_scales(features, image_shapes)
    rois = to_rois(boxes)
    return scales, rois, map_levels(rois[:, 1:], scales)


def multiscale_roi_align_reference(
    features: Sequence[Tensor],
    boxes: Sequence[Tensor],
    image_shapes: Sequence[tuple[int, int]],
    output_size: int | Sequence[int],
    sampling_ratio: int,
    aligned: bool = False,
) -> Tensor:
    """torchvision's per-level loop (its ``_multiscale_roi_align``), on its ``roi_align``."""
    size = pooled_size("multiscale_roi_align", output_size)
    scales, rois, levels = assign_levels(features, boxes, image_shapes)
    first = features[0]
    result = first.new_zeros((rois.shape[0], first.shape[1], *size))
    for level, (feature, scale) in enumerate(zip(features, scales, strict=True)):
        idx = torch.where(levels == level)[0]
        pooled = roi_align(feature, rois[idx], size, scale, sampling_ratio, aligned)
        result[idx] = pooled.to(result.dtype)
    return result


def multiscale_roi_align(
    features: Sequence[Tensor],
    boxes: Sequence[Tensor],
    image_shapes: Sequence[tuple[int, int]],
    output_size: int | Sequence[int],
    sampling_ratio: int,
    aligned: bool = False,
) -> Tensor:
    """Pool each box from its FPN level, as torchvision's ``MultiScaleRoIAlign``.

    Args:
        features: L levels, each (B, C, H_l, W_l), finest first.
        boxes: B tensors (N_i, 4) float, xyxy in input-image pixels.
        image_shapes: the B images' (H, W) (sizes before padding to a batch).
        output_size: S or (Sh, Sw).
        sampling_ratio: samples per bin side; <= 0 adapts to the box size.
        aligned: RoIAlign's half-pixel shift (torchvision's MultiScaleRoIAlign uses False).

    Returns:
        (sum N_i, C, Sh, Sw), differentiable with respect to the features.
    """
    op = "multiscale_roi_align"
    check_pyramid(op, features, boxes)
    first = features[0]
    for i, s in enumerate(image_shapes):
        _checks.image_shape(op, f"image_shapes[{i}]", s)
    pooled_h, pooled_w = pooled_size(op, output_size)
    if len(features) > 8:
        raise ValueError(f"{op}: at most 8 levels, got {len(features)}")
    half_on_cpu = first.dtype in (torch.float16, torch.bfloat16) and not first.is_cuda
    if not cuda_ext.supports(first) or half_on_cpu:
        return multiscale_roi_align_reference(
            features, boxes, image_shapes, output_size, sampling_ratio, aligned
        )
    scales, rois, levels = assign_levels(features, boxes, image_shapes)
    result: Tensor = torch.ops.cuda_ext.multiscale_roi_align(
        list(features), rois, levels, scales, pooled_h, pooled_w, sampling_ratio, aligned
    )
    return result


__all__ = [
    "assign_levels",
    "infer_scales",
    "map_levels",
    "multiscale_roi_align",
    "multiscale_roi_align_reference",
    "to_rois",
]
