"""YOLACT's heads: the prototype net, the shared prediction head and YOLACT++'s mask IoU
branch, with the official module names (``proto_net.*``, ``prediction_layers.0.*``,
``maskiou_net.maskiou_net.*``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Upsample2x(nn.Module):
    """Bilinear 2x upsampling (the official ``InterpolateModule``; no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def proto_net(features: int, mask_dim: int) -> nn.Sequential:
    """The official ``mask_proto_net`` (3 convs, 2x upsample, conv, 1x1 to the prototypes):
    ``(B, features, h, w)`` -> ``(B, mask_dim, 2h, 2w)`` before the final ReLU (applied by
    the model). Indices 0, 2, 4, 8, 10 hold the convolutions, as the official ``make_net``
    numbers them."""

    def conv3() -> list[nn.Module]:
        return [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]

    layers = [*conv3(), *conv3(), *conv3(), Upsample2x(), nn.ReLU(inplace=True), *conv3()]
    layers.append(nn.Conv2d(features, mask_dim, 1))
    return nn.Sequential(*layers)


class PredictionModule(nn.Module):
    """The head shared by every level: ``(B, channels, h, w)`` -> box offsets ``(B, h*w*A,
    4)``, class logits ``(B, h*w*A, num_classes)`` and tanh mask coefficients ``(B, h*w*A,
    mask_dim)``, A = ``num_priors`` anchors per cell, in the priors' order."""

    def __init__(self, channels: int, num_priors: int, num_classes: int, mask_dim: int) -> None:
        super().__init__()
        c, a = channels, num_priors
        self.num_classes, self.mask_dim = num_classes, mask_dim
        self.upfeature = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(c, a * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(c, a * num_classes, 3, padding=1)
        self.mask_layer = nn.Conv2d(c, a * mask_dim, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b = x.shape[0]
        x = self.upfeature(x)
        loc = self.bbox_layer(x).permute(0, 2, 3, 1).reshape(b, -1, 4)
        conf = self.conf_layer(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
        coeff = self.mask_layer(x).permute(0, 2, 3, 1).reshape(b, -1, self.mask_dim)
        return loc, conf, torch.tanh(coeff)


class FastMaskIoUNet(nn.Module):
    """YOLACT++'s mask re-scoring branch: ``(N, 1, h, w)`` masks -> ``(N, num_classes)``
    predicted IoU of each mask with its object, per class (ReLU, so >= 0)."""

    def __init__(self, channels: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for c in channels:
            layers += [nn.Conv2d(previous, c, 3, stride=2), nn.ReLU(inplace=True)]
            previous = c
        layers += [nn.Conv2d(previous, num_classes, 1), nn.ReLU(inplace=True)]
        self.maskiou_net = nn.Sequential(*layers)

    def forward(self, masks: Tensor) -> Tensor:
        x = self.maskiou_net(masks)
        return F.max_pool2d(x, kernel_size=x.shape[2:]).flatten(1)
