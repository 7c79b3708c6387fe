"""YOLACT's ResNet backbones (18, 34, 50, 101 layers; DCNv2 blocks for YOLACT++).

Module names follow the official ``backbone.py`` (``conv1``, ``bn1``, ``layers.N.M.*``,
``downsample.0/1``; a deformable block's ``conv2`` holds ``weight``, ``bias`` and
``conv_offset_mask``), so the official checkpoints' ``backbone.*`` keys load as they are.
Registered in ``segcore.models.backbones`` as ``resnet18``, ``resnet34``, ``resnet50`` and
``resnet101``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from segcore.models.backbones import register_backbone


class DCN(nn.Module):
    """Modulated deformable 3x3 convolution (DCNv2) with the official checkpoint's parameters:
    ``weight``, ``bias`` and ``conv_offset_mask`` (offsets and modulation in one conv),
    computed with torchvision's ``deform_conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dilation: int = 1):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, dilation, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_offset_mask = nn.Conv2d(
            in_channels, 27, 3, stride=stride, padding=dilation, dilation=dilation
        )
        bound = 1.0 / math.sqrt(in_channels * 9)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return deform_conv2d(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=torch.sigmoid(mask),
        )


class Bottleneck(nn.Module):
    """ResNet bottleneck with the stride on the 3x3 convolution, as YOLACT's backbone."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        use_dcn: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2: nn.Module = (
            DCN(planes, planes, stride)
            if use_dcn
            else nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class BasicBlock(nn.Module):
    """ResNet-18/34 block (two 3x3 convolutions), with YOLACT's naming."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        use_dcn: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2: nn.Module = (
            DCN(planes, planes, 1)
            if use_dcn
            else nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNetBackbone(nn.Module):
    """YOLACT's ResNet: ``(B, 3, H, W)`` -> the four stages' outputs C2..C5 (strides 4 to 32,
    ``channels`` of each). Stage ``i`` has ``blocks[i]`` blocks; with ``dcn_layers[i] = n``
    its last ``n`` blocks are deformable, every ``dcn_interval``-th of them (the official
    ``_make_layer`` rule)."""

    def __init__(
        self,
        block: type[Bottleneck] | type[BasicBlock],
        blocks: tuple[int, int, int, int],
        *,
        width: int = 64,
        dcn_layers: tuple[int, int, int, int] = (0, 0, 0, 0),
        dcn_interval: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layers = nn.ModuleList()
        self.channels: list[int] = []
        inplanes = width
        stage_planes = (width, 2 * width, 4 * width, 8 * width)
        for index, (count, planes) in enumerate(zip(blocks, stage_planes, strict=True)):
            stride = 1 if index == 0 else 2
            out_planes = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != out_planes:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, out_planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_planes),
                )
            dcn = dcn_layers[index]
            layer = [block(inplanes, planes, stride, downsample, use_dcn=dcn >= count)]
            inplanes = out_planes
            for i in range(1, count):
                use_dcn = (i + dcn) >= count and i % dcn_interval == 0
                layer.append(block(inplanes, planes, use_dcn=use_dcn))
            self.layers.append(nn.Sequential(*layer))
            self.channels.append(inplanes)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


def _resnet(
    name: str, block: type[BasicBlock] | type[Bottleneck], counts: tuple[int, int, int, int]
) -> None:
    """Register ``name``: a ResNet of ``block``s, ``counts`` of them per stage."""

    def build(
        *,
        width: int = 64,
        dcn_layers: tuple[int, int, int, int] = (0, 0, 0, 0),
        dcn_interval: int = 1,
    ) -> ResNetBackbone:
        return ResNetBackbone(
            block, counts, width=width, dcn_layers=dcn_layers, dcn_interval=dcn_interval
        )

    kind = "basic blocks" if block is BasicBlock else "bottlenecks"
    build.__doc__ = f"{name} ({kind} {counts}); ``width`` channels in the first stage."
    register_backbone(name)(build)


_resnet("resnet18", BasicBlock, (2, 2, 2, 2))
_resnet("resnet34", BasicBlock, (3, 4, 6, 3))
_resnet("resnet50", Bottleneck, (3, 4, 6, 3))
_resnet("resnet101", Bottleneck, (3, 4, 23, 3))
