"""PANet assembled from torchvision's MaskRCNN and segstream's Mask R-CNN parts.

The network is a torchvision ``MaskRCNN`` (its RPN, its RoI heads' sampling, losses and
inference), finished as every Mask R-CNN here is (``segcore.models.maskrcnn._finish``: the
fused transform and mask pasting), with PANet's three changes swapped in: the backbone's
bottom-up path, adaptive feature pooling in both branches, and the mask head's fc fusion
(``segcore.models.panet.parts``). ``panet_r50_fpn`` is the official ResNet-50 model
(``configs/panet/e2e_panet_R-50-FPN_2x_mask.yaml``: GroupNorm FPN and heads, 4conv1fc box
head, 81 COCO classes, caffe-style ResNet with the stride in the 1x1 convolution).
"""

from __future__ import annotations

from typing import Literal, Unpack

from torch import nn
from torchvision.models import resnet50
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops.misc import FrozenBatchNorm2d

from segcore.labels import BACKGROUND
from segcore.models.maskrcnn import COCO_CATEGORIES, MaskRCNNSettings, _checked, _finish
from segcore.models.panet.checkpoint import official_loader
from segcore.models.panet.parts import (
    LEVELS,
    AdaptiveConvBoxHead,
    AdaptiveMLPBoxHead,
    AllLevelsRoIPool,
    FusedMaskHead,
    FusedMaskPredictor,
    PyramidBackbone,
    group_norm,
)
from segcore.registry import Served, register

#: The 80 COCO classes of the official checkpoints (contiguous ids), background first.
COCO_CLASSES: list[str] = [BACKGROUND, *(c for c in COCO_CATEGORIES[1:] if c != "N/A")]

#: The official model's input: BGR 0..255 less the caffe means, so on torchvision's RGB
#: 0..1 scale, std 1/255 (the loader turns the first convolution's channels to RGB).
CAFFE_MEAN = [122.7717 / 255, 115.9465 / 255, 102.9801 / 255]
CAFFE_STD = [1 / 255] * 3

BoxHead = Literal["conv", "mlp"]


def assemble_panet(
    backbone: PyramidBackbone,
    class_names: list[str],
    *,
    box_head: BoxHead = "conv",
    head_channels: int = 256,
    representation: int = 1024,
    gn_groups: int = 32,
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
    **settings: Unpack[MaskRCNNSettings],
) -> MaskRCNN:
    """A torchvision MaskRCNN on ``backbone`` (built with ``bottom_up=True``) with PANet's
    heads: adaptive pooling (box 7x7, mask 14x14, sampling ratio 2) into ``box_head``
    ("conv": 4conv1fc, "mlp": 2fc) and the fc-fusion mask head (28x28 masks), both with
    ``gn_groups``-group GroupNorm; ``class_names`` start with the background."""
    if backbone.bottom_up is None:
        raise ValueError("assemble_panet: the backbone needs bottom_up=True")
    channels, levels = backbone.out_channels, len(LEVELS)
    anchors = AnchorGenerator(tuple((s,) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * 5)
    head: nn.Module
    if box_head == "conv":
        head = AdaptiveConvBoxHead(
            channels, levels, 7, channels=head_channels, representation=representation,
            gn_groups=gn_groups,
        )  # fmt: skip
    elif box_head == "mlp":
        head = AdaptiveMLPBoxHead(
            channels, levels, 7, representation=representation, gn_groups=gn_groups
        )
    else:
        raise ValueError(f"box_head must be 'conv' or 'mlp', got {box_head!r}")
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(channels, anchors.num_anchors_per_location()[0]),
        box_head=head,
        box_predictor=FastRCNNPredictor(representation, len(class_names)),
        mask_head=FusedMaskHead(channels, levels, 14, channels=head_channels, gn_groups=gn_groups),
        mask_predictor=FusedMaskPredictor(head_channels, len(class_names)),
        **settings,
    )
    model = _finish(model)
    # torchvision only takes its own pooling class and _finish puts in the fused one-level
    # pooling; PANet pools every RoI from all levels.
    model.roi_heads.box_roi_pool = AllLevelsRoIPool(LEVELS, 7, 2)
    model.roi_heads.mask_roi_pool = AllLevelsRoIPool(LEVELS, 14, 2)
    model.class_names = list(class_names)
    return model


def caffe_resnet50(trainable_layers: int) -> tuple[nn.Module, list[int]]:
    """torchvision's ResNet-50 as Detectron's (frozen affine norms, eps 0, the stride of
    each stage's first block in its 1x1 convolution), returning C2..C5, and their channels;
    the stem and the first ``5 - trainable_layers`` stages are frozen."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be in [0, 5], got {trainable_layers}")
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    for module in body.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = 0.0
    for layer in (body.layer2, body.layer3, body.layer4):
        block = layer[0]
        block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in train):
            parameter.requires_grad_(False)
    layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    return IntermediateLayerGetter(body, return_layers=layers), [256, 512, 1024, 2048]


#: The served build on the CPU, as Mask R-CNN's: the backbone (ResNet, FPN, bottom-up path)
#: and the RPN head as Inductor graphs for 4:3 and 16:9 frames (bench/models.py).
SERVED_CPU = Served(
    compile=("backbone", "rpn.head"),
    warm_sizes=((480, 640), (1080, 1920)),
    measured="bench/models.py --models panet_r50_fpn: see docs/benchmarks.md",
)


@register(
    "panet_r50_fpn",
    loader=official_loader("panet_r50_fpn"),
    input_side=1000,
    served={"cpu": SERVED_CPU},
)
def panet_r50_fpn(
    *,
    num_classes: int | None = None,
    trainable_backbone_layers: int = 3,
    **settings: Unpack[MaskRCNNSettings],
) -> MaskRCNN:
    """The official PANet (ResNet-50 FPN, GroupNorm, ``e2e_panet_R-50-FPN_2x_mask``): loads
    the official checkpoints by their own keys. Defaults as the official test config (shorter
    side 1000, longer at most 1400, caffe input normalisation); ``settings`` are torchvision's
    MaskRCNN settings, ``num_classes`` counts the background (81 for COCO)."""
    settings = _checked("panet_r50_fpn", settings)
    body, in_channels = caffe_resnet50(trainable_backbone_layers)
    backbone = PyramidBackbone(
        body, in_channels, 256, norm_layer=group_norm(32), bottom_up=True, gn_groups=32
    )
    classes = num_classes or len(COCO_CLASSES)
    names = (
        COCO_CLASSES
        if classes == len(COCO_CLASSES)
        else [BACKGROUND, *(f"class_{i}" for i in range(1, classes))]
    )
    defaults: MaskRCNNSettings = {
        "min_size": 1000,
        "max_size": 1400,
        "image_mean": CAFFE_MEAN,
        "image_std": CAFFE_STD,
    }
    merged: MaskRCNNSettings = {**defaults, **settings}
    return assemble_panet(backbone, names, **merged)


__all__ = ["CAFFE_MEAN", "CAFFE_STD", "COCO_CLASSES", "assemble_panet", "caffe_resnet50"]
