"""YOLACT's feature pyramid (the official ``FPN`` with ``use_conv_downsample``).

Keys: ``lat_layers.K`` (1x1, coarsest level first, as the official module stores them),
``pred_layers.K`` (3x3, padded) and ``downsample_layers.K`` (3x3, stride 2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    """C3..C5 -> P3..P7: lateral 1x1 and prediction 3x3 convolutions (ReLU after), bilinear
    upsampling, and ``num_downsample`` strided 3x3 convolutions for the extra levels; every
    output has ``features`` channels."""

    def __init__(self, in_channels: list[int], features: int, num_downsample: int) -> None:
        super().__init__()
        self.lat_layers = nn.ModuleList([nn.Conv2d(c, features, 1) for c in reversed(in_channels)])
        self.pred_layers = nn.ModuleList(
            [nn.Conv2d(features, features, 3, padding=1) for _ in in_channels]
        )
        self.downsample_layers = nn.ModuleList(
            [nn.Conv2d(features, features, 3, padding=1, stride=2) for _ in range(num_downsample)]
        )

    def forward(self, convouts: list[Tensor]) -> list[Tensor]:
        n = len(convouts)
        out: list[Tensor] = [convouts[0]] * n
        x: Tensor | None = None
        for k, lat_layer in enumerate(self.lat_layers):
            j = n - 1 - k
            lateral = lat_layer(convouts[j])
            if x is not None:
                x = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
                lateral = x + lateral
            x = lateral
            out[j] = x
        for k, pred_layer in enumerate(self.pred_layers):
            j = n - 1 - k
            out[j] = F.relu(pred_layer(out[j]))
        for downsample in self.downsample_layers:
            out.append(downsample(out[-1]))
        return out
