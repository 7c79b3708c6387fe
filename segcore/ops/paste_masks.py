"""Paste per-box masks into full images: torchvision's ``paste_masks_in_image``, in one launch.

torchvision pastes masks one by one in a Python loop. The compiled op (``cuda_ext``) does
every mask in one kernel; :func:`paste_masks_reference` is the pure-PyTorch twin (batched
as two matrix products, since bilinear resizing is separable) used when the library is not
built.
"""

from __future__ import annotations

import torch
from torch import Tensor

import cuda_ext
from segcore.ops import _checks


def expand_boxes(boxes: Tensor, mask_size: int, padding: int) -> Tensor:
    """Integer boxes of the padded masks, computed as torchvision does.

    Args:
        boxes: (N, 4) float, xyxy in image pixels.
        mask_size: M, the side of the square masks.
        padding: zero border added around each mask.

    Returns:
        (N, 4) int64, (x1, y1, x2, y2) with inclusive corners, each box scaled about its
        centre by (M + 2 * padding) / M and truncated toward zero.
    """
    scale = float(mask_size + 2 * padding) / mask_size
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    w_half = w_half * scale
    h_half = h_half * scale
    expanded = torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1)
    return expanded.to(torch.int64)


def _resize_weights(
    start: Tensor, end: Tensor, length: int, in_size: int, dtype: torch.dtype
) -> Tensor:
    """(N, length, in_size) bilinear weights taking a padded mask axis to image pixels.

    Row p of mask n is zero unless start[n] <= p <= end[n]; inside, it holds the two taps of
    resizing in_size -> end - start + 1 (align_corners=False).
    """
    pos = torch.arange(length, device=start.device)
    rel = pos[None, :] - start[:, None]
    valid = (pos[None, :] >= start[:, None]) & (pos[None, :] <= end[:, None])
    out_size = (end - start + 1).clamp(min=1)
    scale = torch.full_like(out_size, in_size, dtype=dtype) / out_size.to(dtype)
    src = (scale[:, None] * (rel.to(dtype) + 0.5) - 0.5).clamp(min=0)
    i0 = src.to(torch.int64).clamp(max=in_size - 1)
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    w1 = (src - i0.to(dtype)).clamp(max=1) * valid
    w0 = (1 - w1) * valid
    weights = torch.zeros(start.shape[0], length, in_size, dtype=dtype, device=start.device)
    weights.scatter_add_(2, i0[..., None], w0[..., None])
    weights.scatter_add_(2, i1[..., None], w1[..., None])
    return weights


def paste_masks_reference(
    masks: Tensor,
    int_boxes: Tensor,
    image_shape: tuple[int, int],
    padding: int = 1,
    threshold: float | None = None,
) -> Tensor:
    """Pure-PyTorch paste of (N, 1, M, M) masks into their integer boxes; see paste_masks."""
    height, width = image_shape
    n, m = masks.shape[0], masks.shape[-1]
    if n == 0 or height == 0 or width == 0:
        dtype = torch.bool if threshold is not None else masks.dtype
        return masks.new_zeros((n, 1, height, width), dtype=dtype)
    compute = torch.float64 if masks.dtype == torch.float64 else torch.float32
    padded = torch.nn.functional.pad(masks[:, 0].to(compute), (padding,) * 4)
    mp = m + 2 * padding
    wy = _resize_weights(int_boxes[:, 1], int_boxes[:, 3], height, mp, compute)
    wx = _resize_weights(int_boxes[:, 0], int_boxes[:, 2], width, mp, compute)
    out = torch.bmm(torch.bmm(wy, padded), wx.transpose(1, 2))[:, None]
    if threshold is not None:
        return out > threshold
    return out.to(masks.dtype)


def _check(masks: Tensor, boxes: Tensor, padding: int) -> None:
    op = "paste_masks"
    _checks.tensor(op, "masks", masks)
    _checks.tensor(op, "boxes", boxes)
    _checks.shape(
        op,
        "masks",
        masks,
        "(N, 1, M, M) with M > 0",
        masks.dim() == 4 and masks.shape[1] == 1 and masks.shape[2] == masks.shape[3] > 0,
    )
    _checks.floating(op, "masks", masks)
    _checks.shape(op, "boxes", boxes, "(N, 4)", boxes.dim() == 2 and boxes.shape[1] == 4)
    _checks.floating(op, "boxes", boxes)
    if boxes.shape[0] != masks.shape[0]:
        raise ValueError(f"{op}: masks has {masks.shape[0]} entries but boxes has {boxes.shape[0]}")
    _checks.same_device(op, masks=masks, boxes=boxes)
    if padding < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {padding}")


def paste_masks(
    masks: Tensor,
    boxes: Tensor,
    image_shape: tuple[int, int],
    padding: int = 1,
    threshold: float | None = None,
) -> Tensor:
    """Paste each mask into its box of an image, as torchvision's ``paste_masks_in_image``.

    Args:
        masks: (N, 1, M, M) float, one square mask per box (mask-head output).
        boxes: (N, 4) float, xyxy in image pixels; boxes may reach outside the image.
        image_shape: (H, W) of the image.
        padding: zero border added around each mask before resizing.
        threshold: when given, return bool masks (value > threshold), binarising in the same
            pass (a quarter of the bytes written for float32).

    Returns:
        (N, 1, H, W) in the masks' dtype (bool with a threshold); zero outside each
        (expanded) box. Unlike
        torchvision, a box lying wholly outside the image gives an empty mask, not an error.
    """
    _check(masks, boxes, padding)
    height, width = _checks.image_shape("paste_masks", "image_shape", image_shape)
    int_boxes = expand_boxes(boxes, masks.shape[-1], padding)
    if cuda_ext.supports(masks):
        result: Tensor = torch.ops.cuda_ext.paste_masks(
            masks, int_boxes, height, width, padding, threshold
        )
        return result
    return paste_masks_reference(masks, int_boxes, (height, width), padding, threshold)
