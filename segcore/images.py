"""Frames as the models take them: the one conversion from a decoded frame to a tensor.

Frames travel and are decoded as (H, W, 3) uint8 RGB, channels last (PIL, PyAV, the
synthetic camera). The models of ``segcore`` take a list of (3, H, W) float32 images in
0..1 (torchvision's detection convention) and normalise them themselves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_float_chw(rgb: np.ndarray, device: torch.device | str | None = None) -> Tensor:
    """(H, W, 3) uint8 RGB frame -> (3, H, W) float32 in 0..1 (value / 255) on ``device``.

    The uint8 frame is moved to ``device`` first (a quarter of the bytes of its float copy)
    and converted there. A read-only or negatively strided frame (``np.asarray`` of a PIL
    image, a flipped view) is copied first; any other frame is shared, not copied, on the CPU.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"to_float_chw: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if not rgb.flags.writeable or any(stride < 0 for stride in rgb.strides):
        rgb = rgb.copy()
    frame = torch.from_numpy(rgb)
    if device is not None:
        frame = frame.to(device)
    return frame.permute(2, 0, 1).float().div_(255)
