"""RoIAlign of every RoI at every pyramid level in one pass: PANet's adaptive feature pooling.

PANet (Liu et al., 2018) pools each RoI from all levels N2..N5 and fuses the levels later
(element-wise max after each level's own first layer). Written by hand this is L calls to
torchvision's ``roi_align``, one per level, each looping over the channels of every RoI. The
compiled ``all_levels_roi_align`` computes each RoI's sampling geometry once per level and
shares it across the channels, parallel over (level, RoI); its backward is registered for
training. Level scales are inferred as torchvision's ``MultiScaleRoIAlign`` infers them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align

import cuda_ext
from segcore.ops import _checks
from segcore.ops.multiscale_roi_align import check_pyramid, infer_scales, pooled_size, to_rois

_OP = "all_levels_roi_align"
_MAX_LEVELS = 8  # the kernels' limit (roi_align.h kMaxLevels)


def all_levels_roi_align_reference(
    features: Sequence[Tensor],
    boxes: Sequence[Tensor],
    image_shapes: Sequence[tuple[int, int]],
    output_size: int | Sequence[int],
    sampling_ratio: int,
    aligned: bool = False,
) -> Tensor:
    """The per-level loop a user would write: torchvision's ``roi_align`` once per level."""
    size = pooled_size(_OP, output_size)
    scales = infer_scales(features, image_shapes)
    rois = to_rois(boxes)
    pooled = [
        roi_align(feature, rois, size, scale, sampling_ratio, aligned)
        for feature, scale in zip(features, scales, strict=True)
    ]
    return torch.stack(pooled)


def _check(
    features: Sequence[Tensor],
    boxes: Sequence[Tensor],
    image_shapes: Sequence[tuple[int, int]],
    sampling_ratio: int,
) -> None:
    if len(features) > _MAX_LEVELS:
        raise ValueError(f"{_OP}: at most {_MAX_LEVELS} levels, got {len(features)}")
    check_pyramid(_OP, features, boxes)
    if len(image_shapes) != len(boxes):
        raise ValueError(
            f"{_OP}: image_shapes has {len(image_shapes)} entries for {len(boxes)} images"
        )
    for i, s in enumerate(image_shapes):
        _checks.image_shape(_OP, f"image_shapes[{i}]", s)
    if int(sampling_ratio) != sampling_ratio:
        raise ValueError(f"{_OP}: sampling_ratio must be an int, got {sampling_ratio!r}")


def _compiled(first: Tensor) -> bool:
    """The compiled kernel serves this tensor (devices without kernels, and a library built
    before the op existed, take the reference)."""
    return cuda_ext.supports(first) and hasattr(torch.ops.cuda_ext, _OP)


def all_levels_roi_align(
    features: Sequence[Tensor],
    boxes: Sequence[Tensor],
    image_shapes: Sequence[tuple[int, int]],
    output_size: int | Sequence[int],
    sampling_ratio: int,
    aligned: bool = False,
) -> Tensor:
    """Pool every box from every level.

    Args:
        features: L levels, each (B, C, H_l, W_l), finest first; one dtype and device.
        boxes: B tensors (N_i, 4) float, xyxy in input-image pixels.
        image_shapes: the B images' (H, W) (sizes before padding to a batch); they set the
            level scales as torchvision's ``MultiScaleRoIAlign`` does (powers of two).
        output_size: S or (Sh, Sw).
        sampling_ratio: samples per bin side; <= 0 adapts to the box size.
        aligned: RoIAlign's half-pixel shift (torchvision's MultiScaleRoIAlign uses False).

    Returns:
        (L, N, C, Sh, Sw), N = sum N_i in image order: slice l is torchvision's ``roi_align``
        of the RoIs (image index, x1, y1, x2, y2) on level l with level l's scale.
        Differentiable with respect to the features. Half precision on CPU is pooled in
        float32 and returned in the features' dtype.
    """
    _check(features, boxes, image_shapes, sampling_ratio)
    pooled_h, pooled_w = pooled_size(_OP, output_size)
    first = features[0]
    if first.dtype in (torch.float16, torch.bfloat16) and first.device.type == "cpu":
        # The compiled CPU kernel has no half-precision path (nor torchvision's for
        # bfloat16): pooled in float32.
        pooled = all_levels_roi_align(
            [f.float() for f in features],
            [b.float() for b in boxes],
            image_shapes,
            output_size,
            sampling_ratio,
            aligned,
        )
        return pooled.to(first.dtype)
    if not boxes:  # a batch of no images
        return first.new_zeros((len(features), 0, first.shape[1], pooled_h, pooled_w))
    if not _compiled(first):
        return all_levels_roi_align_reference(
            features, boxes, image_shapes, output_size, sampling_ratio, aligned
        )
    scales = infer_scales(features, image_shapes)
    rois = to_rois(boxes)
    result: Tensor = torch.ops.cuda_ext.all_levels_roi_align(
        list(features), rois, scales, pooled_h, pooled_w, int(sampling_ratio), bool(aligned)
    )
    return result


__all__ = ["all_levels_roi_align", "all_levels_roi_align_reference"]
