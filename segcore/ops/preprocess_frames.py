"""Decoded frames to model input in one pass: resize (bilinear) and normalise, fused.

The usual route converts the full-resolution uint8 frames to float, interpolates and then
normalises, three passes over memory with a float copy of every frame. The compiled
``preprocess_frames`` reads the uint8 frames (channels last, as decoders produce them) and
writes the normalised planar output directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

import cuda_ext
from segcore.ops import _checks

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def preprocess_frames_reference(
    frames: Tensor, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> Tensor:
    """``F.interpolate`` of the float frames, then the normalisation."""
    planar = frames.permute(0, 3, 1, 2).float()
    resized = torch.nn.functional.interpolate(
        planar, size=size, mode="bilinear", align_corners=False
    )
    mean_t = torch.tensor(mean, dtype=torch.float32, device=frames.device)[None, :, None, None]
    std_t = torch.tensor(std, dtype=torch.float32, device=frames.device)[None, :, None, None]
    return (resized - mean_t) / std_t


def preprocess_frames(
    frames: Tensor,
    size: tuple[int, int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Resize and normalise a batch of decoded frames.

    Args:
        frames: (B, H, W, 3) uint8, channels last.
        size: (h, w) of the model input.
        mean, std: per channel, in the frames' 0..255 scale.

    Returns:
        (B, 3, h, w) float32: bilinear resize (align_corners=False) of the frames, then
        (value - mean[c]) / std[c].
    """
    op = "preprocess_frames"
    _checks.tensor(op, "frames", frames)
    _checks.shape(
        op,
        "frames",
        frames,
        "(B, H, W, 3) with H, W > 0",
        frames.dim() == 4 and frames.shape[3] == 3 and frames.shape[1] > 0 and frames.shape[2] > 0,
    )
    _checks.dtype(op, "frames", frames, (torch.uint8,))
    out_h, out_w = _checks.image_shape(op, "size", size)
    if out_h == 0 or out_w == 0:
        raise ValueError(f"{op}: size must be positive, got {size}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"{op}: mean and std must have 3 values, got {mean}, {std}")
    if any(s == 0 for s in std):
        raise ValueError(f"{op}: std must not be 0, got {std}")
    mean_l, std_l = [float(v) for v in mean], [float(v) for v in std]
    if cuda_ext.supports(frames):
        result: Tensor = torch.ops.cuda_ext.preprocess_frames(frames, out_h, out_w, mean_l, std_l)
        return result
    return preprocess_frames_reference(frames, (out_h, out_w), mean_l, std_l)
