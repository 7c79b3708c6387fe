"""YOLACT's mask assembly: prototypes combined per instance, sigmoid, cropped to the box.

YOLACT computes ``sigmoid(protos @ coeffs.T)`` for the whole prototype plane of every
instance and then multiplies by a crop mask. The compiled ``assemble_masks`` computes only
the pixels inside each box, fuses the three steps in one pass, and takes instances of
several images at once (``batch_index``). Differentiable (the backward is registered with
the op), so training uses it too.
"""

from __future__ import annotations

import torch
from torch import Tensor

import cuda_ext
from segcore.ops import _checks


def crop_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """(N, H, W) bool: pixel (y, x) inside box when x1 <= x < x2 and y1 <= y < y2."""
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype)
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype)
    in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])
    in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])
    return in_y[:, :, None] & in_x[:, None, :]


def assemble_masks_reference(
    protos: Tensor, coeffs: Tensor, boxes: Tensor, batch_index: Tensor
) -> Tensor:
    """PyTorch twin of :func:`assemble_masks` on (B, K, H, W) prototypes."""
    _, k, height, width = protos.shape
    flat = protos.reshape(protos.shape[0], k, height * width)
    logits = torch.bmm(coeffs[:, None, :], flat[batch_index]).reshape(-1, height, width)
    return torch.sigmoid(logits) * crop_mask(boxes, height, width)


def _check_batch_index(op: str, batch_index: Tensor, images: int) -> None:
    """Every entry of ``batch_index`` in [0, images), checked without a host sync.

    On the CPU a bad entry raises ValueError. On another device (CUDA) the check is queued on
    the device's stream (``torch._assert_async``): the host does not wait for it, and a bad
    entry fails the next operation that synchronises, with a device-side assert.
    """
    if batch_index.numel() == 0:
        return
    in_range = ((batch_index >= 0) & (batch_index < images)).all()
    message = f"{op}: batch_index must lie in [0, {images})"
    if batch_index.device.type == "cpu":
        if not bool(in_range):
            raise ValueError(message)
    else:
        torch._assert_async(in_range, message)


def assemble_masks(
    protos: Tensor, coeffs: Tensor, boxes: Tensor, batch_index: Tensor | None = None
) -> Tensor:
    """Instance masks from prototypes.

    Args:
        protos: (K, H, W) prototypes of one image, or (B, K, H, W) of several.
        coeffs: (N, K) mask coefficients, one row per instance.
        boxes: (N, 4) float, xyxy in prototype pixels; pixel x is kept when x1 <= x < x2.
        batch_index: (N,) int64 image of each instance, for (B, K, H, W) prototypes.

    Returns:
        (N, H, W) in the prototypes' dtype: sigmoid(coeffs @ protos) inside each box, 0
        outside.
    """
    op = "assemble_masks"
    for name, value in (("protos", protos), ("coeffs", coeffs), ("boxes", boxes)):
        _checks.tensor(op, name, value)
        _checks.floating(op, name, value)
    _checks.shape(op, "protos", protos, "(K, H, W) or (B, K, H, W)", protos.dim() in (3, 4))
    if protos.dim() == 3:
        if batch_index is not None:
            raise ValueError(f"{op}: batch_index needs (B, K, H, W) protos")
        protos = protos[None]
    k = protos.shape[1]
    _checks.shape(op, "coeffs", coeffs, f"(N, {k})", coeffs.dim() == 2 and coeffs.shape[1] == k)
    n = coeffs.shape[0]
    _checks.shape(op, "boxes", boxes, f"({n}, 4)", tuple(boxes.shape) == (n, 4))
    implied = batch_index is None  # one image: every instance's index is 0
    if batch_index is None:
        if protos.shape[0] != 1:
            raise ValueError(f"{op}: batch_index is required with {protos.shape[0]} images")
        batch_index = torch.zeros(n, dtype=torch.int64, device=coeffs.device)
    _checks.tensor(op, "batch_index", batch_index)
    _checks.dtype(op, "batch_index", batch_index, (torch.int64,))
    _checks.shape(op, "batch_index", batch_index, f"({n},)", tuple(batch_index.shape) == (n,))
    if not protos.dtype == coeffs.dtype == boxes.dtype:
        raise ValueError(
            f"{op}: protos, coeffs and boxes must share a dtype, got "
            f"{protos.dtype}, {coeffs.dtype}, {boxes.dtype}"
        )
    _checks.same_device(op, protos=protos, coeffs=coeffs, boxes=boxes, batch_index=batch_index)
    if not implied:
        _check_batch_index(op, batch_index, protos.shape[0])
    if cuda_ext.supports(protos):
        result: Tensor = torch.ops.cuda_ext.assemble_masks(protos, coeffs, boxes, batch_index)
        return result
    return assemble_masks_reference(protos, coeffs, boxes, batch_index)
