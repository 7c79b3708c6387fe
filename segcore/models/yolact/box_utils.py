"""YOLACT's box math, shared by the model, its post-processing and its losses.

Conventions: priors are ``(P, 4)`` float ``(cx, cy, w, h)`` relative to the (square) input;
boxes are ``(N, 4)`` float ``xyxy`` relative to the image (0..1) unless said otherwise;
regression offsets use YOLACT's variances (0.1 for the centre, 0.2 for the size).
``jaccard`` is the IoU of ``segcore.ops.fast_nms`` (YOLACT's arithmetic), re-exported here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from segcore.ops.fast_nms import jaccard

__all__ = ["decode", "encode", "jaccard", "make_priors", "point_form", "sanitize"]

_CENTRE_VARIANCE, _SIZE_VARIANCE = 0.1, 0.2


def make_priors(
    conv_h: int,
    conv_w: int,
    scales: tuple[float, ...],
    aspect_ratios: tuple[float, ...],
    max_size: int,
    square: bool,
    device: torch.device,
) -> Tensor:
    """``(conv_h * conv_w * A, 4)`` priors of one level, A = len(scales) * len(aspect_ratios),
    in the official order (row, column, scale, aspect ratio). ``scales`` are in input pixels
    of a ``max_size`` square; ``square`` keeps h = w (the official ``use_square_anchors``)."""
    rows = []
    for j in range(conv_h):
        for i in range(conv_w):
            x = (i + 0.5) / conv_w
            y = (j + 0.5) / conv_h
            for scale in scales:
                for ar in aspect_ratios:
                    ar = math.sqrt(ar)
                    w = scale * ar / max_size
                    h = w if square else scale / ar / max_size
                    rows.append((x, y, w, h))
    return torch.tensor(rows, dtype=torch.float32, device=device)


def point_form(priors: Tensor) -> Tensor:
    """``(P, 4)`` cx, cy, w, h -> ``(P, 4)`` xyxy."""
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)


def decode(loc: Tensor, priors: Tensor) -> Tensor:
    """``(P, 4)`` offsets against ``(P, 4)`` priors -> ``(P, 4)`` relative xyxy boxes."""
    centre = priors[:, :2] + loc[:, :2] * _CENTRE_VARIANCE * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * _SIZE_VARIANCE)
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def encode(matched: Tensor, priors: Tensor) -> Tensor:
    """Inverse of :func:`decode`: ``(P, 4)`` relative xyxy boxes -> ``(P, 4)`` offsets."""
    centre = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (
        _CENTRE_VARIANCE * priors[:, 2:]
    )
    size = torch.log((matched[:, 2:] - matched[:, :2]) / priors[:, 2:]) / _SIZE_VARIANCE
    return torch.cat([centre, size], 1)


def sanitize(x1: Tensor, x2: Tensor, size: int, padding: int = 0) -> tuple[Tensor, Tensor]:
    """YOLACT's ``sanitize_coordinates`` (no cast): relative ``(N,)`` coordinates -> pixels of
    an axis ``size`` long, ordered (lo <= hi), widened by ``padding`` and clamped to
    ``[0, size]``."""
    x1, x2 = x1 * size, x2 * size
    lo, hi = torch.minimum(x1, x2), torch.maximum(x1, x2)
    return torch.clamp(lo - padding, min=0), torch.clamp(hi + padding, max=size)
