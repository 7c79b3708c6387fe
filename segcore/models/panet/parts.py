"""PANet's parts (Liu et al., CVPR 2018), as modules that drop into torchvision's MaskRCNN.

- :class:`PyramidBackbone`: a ResNet body and torchvision's FPN (P2..P5), plus, for PANet,
  the bottom-up path augmentation (:class:`BottomUpPath`, N2..N5) and N6 by max-pool (as
  Mask R-CNN makes P6). Outputs an ``OrderedDict`` ``"0".."3", "pool"`` (strides 4..64).
- :class:`AllLevelsRoIPool`: adaptive feature pooling's pooling step: every RoI from every
  level ``"0".."3"`` (``segcore.ops.all_levels_roi_align``), ``(L, N, C, S, S)``.
- :class:`AdaptiveConvBoxHead` (the official ``roi_Xconv1fc_gn_head_panet``: a per-level
  first conv, element-wise max, three convs, one fc) and :class:`AdaptiveMLPBoxHead` (the
  official ``roi_2mlp_head_gn_panet``: a per-level fc1, max, fc2 with GroupNorm).
- :class:`FusedMaskHead` and :class:`FusedMaskPredictor`: the mask branch with
  fully-connected fusion (official ``mask_rcnn_fcn_head_v1upXconvs_gn_adp_ff`` and
  ``mask_rcnn_outputs``): a per-level conv1, max, conv2..conv4, deconv to 2S x 2S per class,
  plus an fc branch from conv3 (conv, conv to half width, fc to 2S x 2S, ReLU, as the
  official head) shared by all classes and added to every class's logits.

GroupNorm follows the official config: ``gn_groups`` groups (32 there) in every head layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation, FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from segcore.ops import all_levels_roi_align

LEVELS = ["0", "1", "2", "3"]


def group_norm(groups: int) -> partial[nn.GroupNorm]:
    """A norm layer factory ``channels -> GroupNorm(groups, channels)``."""
    return partial(nn.GroupNorm, groups)


def _conv(cin: int, cout: int, groups: int, *, stride: int = 1, bias: bool = False) -> nn.Module:
    """conv3x3 + GroupNorm + ReLU (keys ``0.weight[, 0.bias], 1.weight, 1.bias``)."""
    return Conv2dNormActivation(
        cin, cout, 3, stride=stride, norm_layer=group_norm(groups), bias=bias
    )


class BottomUpPath(nn.Module):
    """Bottom-up path augmentation: N2 = P2, N(i+1) = fuse_i(down_i(N_i) + P(i+1)) with
    ``down_i`` a stride-2 conv3x3 and ``fuse_i`` a conv3x3, both with GroupNorm and ReLU
    (and a bias, as the official modules)."""

    def __init__(self, channels: int, levels: int, gn_groups: int) -> None:
        super().__init__()
        self.down = nn.ModuleList(
            _conv(channels, channels, gn_groups, stride=2, bias=True) for _ in range(levels - 1)
        )
        self.fuse = nn.ModuleList(
            _conv(channels, channels, gn_groups, bias=True) for _ in range(levels - 1)
        )

    def forward(self, pyramid: Sequence[Tensor]) -> list[Tensor]:
        """``pyramid``: P2..P5, finest first (each ``(B, C, H_l, W_l)``) -> N2..N5."""
        out = [pyramid[0]]
        for down, fuse, p in zip(self.down, self.fuse, pyramid[1:], strict=True):
            out.append(fuse(down(out[-1]) + p))
        return out


class PyramidBackbone(nn.Module):
    """``body`` (a ``(B, 3, H, W)`` batch -> C2..C5, a list or an ordered dict) with an FPN of
    ``out_channels`` and, when ``bottom_up``, PANet's bottom-up path; returns the levels
    ``"0".."3"`` (P2..P5, or N2..N5) and ``"pool"`` (max-pool of the coarsest, stride 2)."""

    def __init__(
        self,
        body: nn.Module,
        in_channels: list[int],
        out_channels: int,
        *,
        norm_layer: partial[nn.GroupNorm] | None,
        bottom_up: bool,
        gn_groups: int = 32,
    ) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(
            in_channels,
            out_channels,
            extra_blocks=None if bottom_up else LastLevelMaxPool(),
            norm_layer=norm_layer,
        )
        self.bottom_up = (
            BottomUpPath(out_channels, len(in_channels), gn_groups) if bottom_up else None
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body(x)
        if isinstance(features, dict):
            features = list(features.values())
        pyramid = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))
        if self.bottom_up is None:
            return pyramid
        levels = self.bottom_up(list(pyramid.values()))
        out = OrderedDict((str(i), level) for i, level in enumerate(levels))
        out["pool"] = F.max_pool2d(levels[-1], 1, 2, 0)
        return out


class AllLevelsRoIPool(nn.Module):
    """Adaptive feature pooling: each RoI RoIAligned on every level of ``featmap_names``;
    called as torchvision's ``MultiScaleRoIAlign`` is, returns ``(L, N, C, S, S)``."""

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int) -> None:
        super().__init__()
        self.featmap_names = featmap_names
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        return all_levels_roi_align(
            features, boxes, image_shapes, self.output_size, self.sampling_ratio
        )


def _max_over_levels(layers: nn.ModuleList, pooled: Tensor) -> Tensor:
    """``layers[l](pooled[l])`` fused by element-wise max over the levels ``l``."""
    if pooled.shape[0] != len(layers):
        raise ValueError(f"pooled features have {pooled.shape[0]} levels, heads {len(layers)}")
    fused = layers[0](pooled[0])
    for layer, level in zip(layers[1:], pooled[1:], strict=True):
        fused = torch.maximum(fused, layer(level))
    return fused


class AdaptiveConvBoxHead(nn.Module):
    """Box head of PANet's mask config: per-level conv1 (conv3x3 GN ReLU), max fusion, three
    more convs, fc + ReLU; ``(L, N, C, S, S)`` -> ``(N, representation)``."""

    def __init__(
        self, in_channels: int, levels: int, size: int, *, channels: int = 256,
        representation: int = 1024, gn_groups: int = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        self.first = nn.ModuleList(_conv(in_channels, channels, gn_groups) for _ in range(levels))
        self.convs = nn.Sequential(*(_conv(channels, channels, gn_groups) for _ in range(3)))
        self.fc = nn.Linear(channels * size * size, representation)

    def forward(self, pooled: Tensor) -> Tensor:
        x = self.convs(_max_over_levels(self.first, pooled))
        return F.relu(self.fc(x.flatten(1)))


class AdaptiveMLPBoxHead(nn.Module):
    """PANet's two-fc box head: per-level fc1 + ReLU, max fusion, fc2 + GroupNorm + ReLU;
    ``(L, N, C, S, S)`` -> ``(N, representation)``."""

    def __init__(
        self, in_channels: int, levels: int, size: int, *, representation: int = 1024,
        gn_groups: int = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        self.fc1 = nn.ModuleList(
            nn.Sequential(nn.Linear(in_channels * size * size, representation), nn.ReLU())
            for _ in range(levels)
        )
        self.fc2 = nn.Sequential(
            nn.Linear(representation, representation),
            nn.GroupNorm(gn_groups, representation),
            nn.ReLU(),
        )

    def forward(self, pooled: Tensor) -> Tensor:
        return self.fc2(_max_over_levels(self.fc1, pooled.flatten(2)))


class FusedMaskHead(nn.Module):
    """PANet's mask head up to the deconvolution: ``(L, N, C, S, S)`` -> ``(features (N, D,
    S, S) of conv4, fc-branch logits (N, 1, 2S, 2S))``; ``channels`` = D."""

    def __init__(
        self, in_channels: int, levels: int, size: int, *, channels: int = 256,
        gn_groups: int = 32,
    ) -> None:  # fmt: skip
        super().__init__()
        half = channels // 2
        self.first = nn.ModuleList(_conv(in_channels, channels, gn_groups) for _ in range(levels))
        self.convs = nn.Sequential(*(_conv(channels, channels, gn_groups) for _ in range(2)))
        self.conv4 = _conv(channels, channels, gn_groups)
        self.fc_conv4 = _conv(channels, channels, gn_groups)
        self.fc_conv5 = _conv(channels, half, gn_groups)
        self.fc = nn.Linear(half * size * size, 4 * size * size)
        self.size = 2 * size
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        x = self.convs(_max_over_levels(self.first, pooled))
        fc = F.relu(self.fc(self.fc_conv5(self.fc_conv4(x)).flatten(1)))
        return self.conv4(x), fc.view(-1, 1, self.size, self.size)


class FusedMaskPredictor(nn.Module):
    """Deconvolution (2x) + ReLU and per-class 1x1 logits, plus the shared fc-branch logits:
    ``(features (N, D, S, S), fc (N, 1, 2S, 2S))`` -> ``(N, classes, 2S, 2S)``."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(channels, channels, 2, 2, 0)
        self.mask_fcn_logits = nn.Conv2d(channels, num_classes, 1)
        for module in (self.conv5_mask, self.mask_fcn_logits):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)  # type: ignore[arg-type]

    def forward(self, x: tuple[Tensor, Tensor]) -> Tensor:
        features, fc = x
        return self.mask_fcn_logits(F.relu(self.conv5_mask(features))) + fc


__all__ = [
    "LEVELS",
    "AdaptiveConvBoxHead",
    "AdaptiveMLPBoxHead",
    "AllLevelsRoIPool",
    "BottomUpPath",
    "FusedMaskHead",
    "FusedMaskPredictor",
    "PyramidBackbone",
    "group_norm",
]
