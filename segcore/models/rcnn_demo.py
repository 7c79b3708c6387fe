"""The two-stage demo models: ``maskrcnn_r18_demo`` and ``panet_r18_demo``.

Both are built on the same parts for an honest comparison of PANet's changes: the demo's
narrow ResNet-18 (the ``resnet18`` backbone at ``width=32``, as ``yolact_r18_demo``), an FPN
of :data:`FPN_CHANNELS` channels with GroupNorm, anchors of 16..256 pixels, the synthetic
camera's five classes (``segcore.models.yolact.demo.CLASSES``, plus the background), frames
at their own 240x320 (no resize: ``min_size`` 240, ``max_size`` 320) and the same RPN and
RoI sampling. Mask R-CNN's heads: a 2-fc box head on 7x7 RoIs of one level and the 4-conv
mask head (GroupNorm, as PANet's); PANet's: the bottom-up path (N2..N5), every RoI pooled
from all levels into a per-level fc1 / conv1 fused by max, and the fc-fusion mask head.

Trained by ``segstream train configs/{name}.toml`` (same data, schedule and budget); the
float16 weights ship in ``segcore/weights/{name}.pt`` and load by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Unpack

from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead

from segcore.labels import BACKGROUND
from segcore.models.backbones import build_backbone
from segcore.models.maskrcnn import MaskRCNNSettings, _checked, _finish
from segcore.models.panet import PyramidBackbone, assemble_panet, group_norm, official_loader
from segcore.models.weights import WeightsError
from segcore.models.yolact.demo import CLASSES
from segcore.registry import register

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
CLASS_NAMES: list[str] = [BACKGROUND, *CLASSES]
BACKBONE_WIDTH = 32  # channels of the first ResNet stage (64 in ResNet-18)
FPN_CHANNELS = 64
HEAD_CHANNELS = 64  # mask head (and PANet's conv layers)
REPRESENTATION = 256  # box head fc width
GN_GROUPS = 16
ANCHOR_SIZES = (16, 32, 64, 128, 256)
INPUT_SIDE = 240

#: The settings both demos share (torchvision's MaskRCNN settings).
DEMO_SETTINGS: MaskRCNNSettings = {
    "min_size": 240,
    "max_size": 320,
    "rpn_pre_nms_top_n_train": 600,
    "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 500,
    "rpn_post_nms_top_n_test": 200,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 50,
}


def demo_weights(name: str) -> Path:
    """Where the shipped weights of the demo ``name`` live."""
    return WEIGHTS_DIR / f"{name}.pt"


def _backbone(bottom_up: bool) -> PyramidBackbone:
    body = build_backbone("resnet18", width=BACKBONE_WIDTH)
    channels: list[int] = body.channels  # type: ignore[assignment]
    return PyramidBackbone(
        body,
        list(channels),
        FPN_CHANNELS,
        norm_layer=group_norm(GN_GROUPS),
        bottom_up=bottom_up,
        gn_groups=GN_GROUPS,
    )


def _settings(name: str, num_classes: int | None, settings: MaskRCNNSettings) -> MaskRCNNSettings:
    if num_classes not in (None, len(CLASS_NAMES)):
        raise TypeError(f"{name} has {len(CLASS_NAMES)} classes (with the background)")
    return {**DEMO_SETTINGS, **_checked(name, settings)}


def _pretrained(name: str, model: nn.Module, pretrained: bool) -> nn.Module:
    if pretrained:
        path = demo_weights(name)
        if not path.is_file():
            raise WeightsError(
                f"{path} is missing; train it with `segstream train configs/{name}.toml` "
                "or pass pretrained=False"
            )
        official_loader(name)(model, path)
    return model


@register("maskrcnn_r18_demo", loader=official_loader("maskrcnn_r18_demo"), input_side=INPUT_SIDE)
def maskrcnn_r18_demo(
    *, pretrained: bool = True, num_classes: int | None = None,
    **settings: Unpack[MaskRCNNSettings],
) -> MaskRCNN:  # fmt: skip
    """The Mask R-CNN demo (see the module docstring), with its shipped weights unless
    ``pretrained=False`` (for training); ``settings`` are torchvision's MaskRCNN settings."""
    merged = _settings("maskrcnn_r18_demo", num_classes, settings)
    anchors = AnchorGenerator(tuple((s,) for s in ANCHOR_SIZES), ((0.5, 1.0, 2.0),) * 5)
    model = MaskRCNN(
        _backbone(bottom_up=False),
        num_classes=None,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(FPN_CHANNELS, anchors.num_anchors_per_location()[0]),
        box_head=TwoMLPHead(FPN_CHANNELS * 7 * 7, REPRESENTATION),
        box_predictor=FastRCNNPredictor(REPRESENTATION, len(CLASS_NAMES)),
        mask_head=MaskRCNNHeads(
            FPN_CHANNELS, [HEAD_CHANNELS] * 4, 1, norm_layer=group_norm(GN_GROUPS)
        ),
        mask_predictor=MaskRCNNPredictor(HEAD_CHANNELS, HEAD_CHANNELS, len(CLASS_NAMES)),
        **merged,
    )
    model = _finish(model)
    model.class_names = list(CLASS_NAMES)
    return _pretrained("maskrcnn_r18_demo", model, pretrained)


@register("panet_r18_demo", loader=official_loader("panet_r18_demo"), input_side=INPUT_SIDE)
def panet_r18_demo(
    *, pretrained: bool = True, num_classes: int | None = None,
    **settings: Unpack[MaskRCNNSettings],
) -> MaskRCNN:  # fmt: skip
    """The PANet demo (see the module docstring), with its shipped weights unless
    ``pretrained=False`` (for training); ``settings`` are torchvision's MaskRCNN settings."""
    merged = _settings("panet_r18_demo", num_classes, settings)
    model = assemble_panet(
        _backbone(bottom_up=True),
        CLASS_NAMES,
        box_head="mlp",
        head_channels=HEAD_CHANNELS,
        representation=REPRESENTATION,
        gn_groups=GN_GROUPS,
        anchor_sizes=ANCHOR_SIZES,
        **merged,
    )
    return _pretrained("panet_r18_demo", model, pretrained)


__all__ = ["CLASS_NAMES", "DEMO_SETTINGS", "demo_weights", "maskrcnn_r18_demo", "panet_r18_demo"]
