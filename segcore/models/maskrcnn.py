"""Mask R-CNN (ResNet-50 FPN, torchvision's v1 and v2), on segstream's fused ops.

The modules are torchvision's (``torchvision.models.detection``), so torchvision's state
dicts load as they are and training uses its RPN, box and mask losses. Two steps are
replaced: RoI pooling over the pyramid (``segcore.ops.multiscale_roi_align``: every RoI of
every level in one pass instead of a Python loop over levels) and the pasting of masks into
the image (``segcore.ops.paste_masks``: every mask in one launch instead of one by one).

Serving enters through :func:`infer_frames` (``segcore.models.frames.infer_frames`` calls it
for any ``GeneralizedRCNN`` whose transform is :class:`FusedTransform`, so every model
finished by ``_finish`` has it): uint8 frames, resized and normalised in one
``preprocess_frames`` pass on the model's device with torchvision's geometry, and masks
returned in the compact form (``segcore.models.frames``) instead of pasted full planes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN, MaskRCNN_ResNet50_FPN_Weights
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from segcore.labels import BACKGROUND
from segcore.models.weights import load_strict, read_state_dict
from segcore.ops import expand_boxes, multiscale_roi_align, paste_masks, preprocess_frames
from segcore.registry import Served, register

#: torchvision's COCO category names, index = label (0 is the background, "N/A" unused ids).
COCO_CATEGORIES: list[str] = list(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])

_LEVELS = ["0", "1", "2", "3"]


class MaskRCNNSettings(TypedDict, total=False):
    """torchvision's ``MaskRCNN`` settings a builder passes on (sizes in pixels, thresholds
    and counts per image; ``image_mean``/``image_std`` per RGB channel on the 0..1 scale)."""

    min_size: int
    max_size: int
    image_mean: list[float]
    image_std: list[float]
    size_divisible: int
    fixed_size: tuple[int, int]
    rpn_pre_nms_top_n_train: int
    rpn_pre_nms_top_n_test: int
    rpn_post_nms_top_n_train: int
    rpn_post_nms_top_n_test: int
    rpn_nms_thresh: float
    rpn_fg_iou_thresh: float
    rpn_bg_iou_thresh: float
    rpn_batch_size_per_image: int
    rpn_positive_fraction: float
    rpn_score_thresh: float
    box_score_thresh: float
    box_nms_thresh: float
    box_detections_per_img: int
    box_fg_iou_thresh: float
    box_bg_iou_thresh: float
    box_batch_size_per_image: int
    box_positive_fraction: float
    bbox_reg_weights: tuple[float, float, float, float]


def _checked(name: str, settings: MaskRCNNSettings) -> MaskRCNNSettings:
    unknown = sorted(set(settings) - set(MaskRCNNSettings.__annotations__))
    if unknown:
        raise TypeError(f"{name}: unknown settings {', '.join(unknown)}")
    return settings


class FusedMultiScaleRoIAlign(nn.Module):
    """Drop-in for ``torchvision.ops.MultiScaleRoIAlign`` running the fused op."""

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int) -> None:
        super().__init__()
        self.featmap_names = featmap_names
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio

    def forward(
        self,
        x: dict[str, Tensor],
        boxes: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        return multiscale_roi_align(
            features, boxes, image_shapes, self.output_size, self.sampling_ratio
        )


class FusedTransform(GeneralizedRCNNTransform):
    """torchvision's transform, pasting all masks of an image with one ``paste_masks`` call;
    :meth:`batch_frames` takes uint8 frames through ``preprocess_frames`` instead."""

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) torchvision's ``resize`` gives an image of ``height`` x ``width`` in eval:
        ``fixed_size`` (w, h) when set, else both sides times ``min(min_size / shorter,
        max_size / longer)``, floored (``F.interpolate``'s ``recompute_scale_factor``)."""
        if self.fixed_size is not None:
            return int(self.fixed_size[1]), int(self.fixed_size[0])
        scale = min(
            float(self.min_size[-1]) / min(height, width), self.max_size / max(height, width)
        )
        return math.floor(float(height) * scale), math.floor(float(width) * scale)

    def batch_frames(
        self, frames: Tensor | Sequence[Tensor]
    ) -> tuple[ImageList, list[tuple[int, int]]]:
        """uint8 frames -> the padded, normalised batch torchvision's ``forward`` makes of
        the same frames as float images in 0..1, and the frames' own (h, w).

        ``frames``: (B, H, W, 3) uint8 RGB, or a sequence of (H, W, 3) when sizes differ, on
        the model's device. Each frame is resized (bilinear, align_corners=False, to
        :meth:`resized_size`) and normalised in one ``preprocess_frames`` pass (frames of one
        size in one call); torchvision normalises before resizing, which is the same map as
        both are affine per channel. Then ``batch_images`` pads to ``size_divisible``."""
        if self.training:
            raise ValueError("FusedTransform.batch_frames: eval only (training takes targets)")
        mean = [255.0 * float(m) for m in self.image_mean]
        std = [255.0 * float(s) for s in self.image_std]
        groups = [frames] if isinstance(frames, Tensor) else [f[None] for f in frames]
        images: list[Tensor] = []
        originals: list[tuple[int, int]] = []
        for group in groups:
            if group.dim() != 4 or group.shape[-1] != 3:
                raise ValueError(
                    f"batch_frames: frames must be (B, H, W, 3) or (H, W, 3) each, got "
                    f"{tuple(group.shape[1:] if group.dim() == 4 else group.shape)}"
                )
            height, width = int(group.shape[1]), int(group.shape[2])
            resized = preprocess_frames(group, self.resized_size(height, width), mean, std)
            images.extend(resized.unbind(0))
            originals.extend([(height, width)] * group.shape[0])
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        return ImageList(self.batch_images(images, self.size_divisible), sizes), originals

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
        mask_format: str = "full",
    ) -> list[dict[str, Tensor]]:
        """Boxes back to the original sizes; masks pasted as (N, 1, H, W) probabilities
        (``mask_format="full"``, torchvision's output) or left at 28x28 in compact form
        (``"compact"``, see ``segcore.models.frames``)."""
        if mask_format not in ("full", "compact"):
            raise ValueError(f"mask_format must be 'full' or 'compact', got {mask_format!r}")
        if self.training:
            return result
        for pred, size, original in zip(result, image_shapes, original_image_sizes, strict=True):
            pred["boxes"] = resize_boxes(pred["boxes"], size, original)
            if "masks" not in pred:
                continue
            if mask_format == "compact":
                pred.update(compact_masks(pred["masks"], pred["boxes"]))
            else:
                pred["masks"] = paste_masks(pred["masks"], pred["boxes"], original)
        return result


def compact_masks(masks: Tensor, boxes: Tensor) -> dict[str, Tensor]:
    """torchvision's pasting of (N, 1, M, M) masks into ``boxes`` (xyxy) in compact form:
    ``masks`` (N, 1, M + 2, M + 2) with the one-cell zero border torchvision pads them with,
    and ``mask_boxes`` (N, 4), the pixel edges the padded mask spans (the integer box of
    ``expand_boxes``, its inclusive x2, y2 made exclusive). Pasted at the same size with
    padding 0 this is torchvision's paste, value for value."""
    inclusive = expand_boxes(boxes, masks.shape[-1], 1).to(boxes.dtype)
    edges = inclusive + inclusive.new_tensor([0.0, 0.0, 1.0, 1.0])
    return {"masks": F.pad(masks, (1, 1, 1, 1)), "mask_boxes": edges}


def infer_frames(
    model: GeneralizedRCNN, frames: Tensor | Sequence[Tensor], mask_format: str = "compact"
) -> list[dict[str, Tensor]]:
    """Mask R-CNN (any ``GeneralizedRCNN`` with a :class:`FusedTransform`) on uint8 frames
    (see :meth:`FusedTransform.batch_frames`): torchvision's eval ``forward`` with the
    transform's resize and normalisation done by ``preprocess_frames``. Outputs are
    torchvision's dicts at the frames' sizes, masks as ``mask_format`` says."""
    transform = model.transform
    if not isinstance(transform, FusedTransform):
        raise TypeError(f"infer_frames: {type(model).__name__}'s transform is not FusedTransform")
    if model.training:
        raise ValueError("infer_frames: call model.eval() first")
    images, originals = transform.batch_frames(frames)
    features = model.backbone(images.tensors)
    if isinstance(features, Tensor):
        features = OrderedDict([("0", features)])
    proposals, _ = model.rpn(images, features)
    detections, _ = model.roi_heads(features, proposals, images.image_sizes)
    return transform.postprocess(detections, images.image_sizes, originals, mask_format)


def _backbone(
    resnet_norm: type[nn.Module], fpn_norm: type[nn.Module] | None, trainable_layers: int
) -> BackboneWithFPN:
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_backbone_layers must be in [0, 5], got {trainable_layers}")
    body = resnet50(weights=None, norm_layer=resnet_norm)
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        train.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in train):
            parameter.requires_grad_(False)
    return BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=[256, 512, 1024, 2048],
        out_channels=256,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=fpn_norm,
    )


def _finish(model: MaskRCNN) -> MaskRCNN:
    """Swap in the fused pooling and pasting; keep torchvision's transform settings."""
    old = model.transform
    model.transform = FusedTransform(
        old.min_size,
        old.max_size,
        old.image_mean,
        old.image_std,
        size_divisible=old.size_divisible,
        fixed_size=old.fixed_size,
    )
    model.roi_heads.box_roi_pool = FusedMultiScaleRoIAlign(_LEVELS, 7, 2)
    model.roi_heads.mask_roi_pool = FusedMultiScaleRoIAlign(_LEVELS, 14, 2)
    classes = model.roi_heads.box_predictor.cls_score.out_features
    model.class_names = (
        COCO_CATEGORIES
        if classes == len(COCO_CATEGORIES)
        else [BACKGROUND, *(f"class_{i}" for i in range(1, classes))]
    )
    return model


def rename_legacy_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Key spellings of older torchvision files, renamed as torchvision does on load.

    ``rpn.head.conv.*`` became ``rpn.head.conv.0.0.*`` and ``roi_heads.mask_head.mask_fcnK.*``
    became ``roi_heads.mask_head.{K-1}.0.*`` (version 2 of those modules); frozen batch norms
    have no ``num_batches_tracked``.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked") and key.startswith("backbone.body."):
            continue
        if key in ("rpn.head.conv.weight", "rpn.head.conv.bias"):
            key = key.replace("rpn.head.conv.", "rpn.head.conv.0.0.")
        elif key.startswith("roi_heads.mask_head.mask_fcn"):
            rest = key.removeprefix("roi_heads.mask_head.mask_fcn")
            index, _, kind = rest.partition(".")
            key = f"roi_heads.mask_head.{int(index) - 1}.0.{kind}"
        out[key] = value
    return out


def _load(what: str) -> Callable[[nn.Module, str | Path | dict[str, Any]], None]:
    def load(model: nn.Module, weights: str | Path | dict[str, Any]) -> None:
        state = read_state_dict(weights)
        expected = model.state_dict()
        renamed = rename_legacy_keys(state)
        # Keep num_batches_tracked where the model has a real BatchNorm there.
        for key, value in state.items():
            if key.endswith("num_batches_tracked") and key in expected:
                renamed[key] = value
        load_strict(model, renamed, what=what)

    return load


#: The served build on the CPU (bench/models.py, docs/benchmarks.md): the backbone with its
#: FPN and the RPN head as Inductor graphs (weights frozen in, oneDNN epilogues fused) for
#: 4:3 and 16:9 frames (800x1088 and 768x1344 after the transform's resize and padding).
SERVED_CPU = Served(
    compile=("backbone", "rpn.head"),
    warm_sizes=((480, 640), (1080, 1920)),
    measured="bench/models.py --models maskrcnn_r50_fpn: see docs/benchmarks.md",
)


@register(
    "maskrcnn_r50_fpn",
    loader=_load("maskrcnn_r50_fpn"),
    input_side=800,
    served={"cpu": SERVED_CPU},
)
def maskrcnn_r50_fpn(
    *,
    num_classes: int | None = None,
    trainable_backbone_layers: int = 3,
    frozen_bn_eps: float = 0.0,
    **settings: Unpack[MaskRCNNSettings],
) -> MaskRCNN:
    """torchvision's ``maskrcnn_resnet50_fpn`` as built for its COCO weights.

    The backbone's batch norms are frozen with ``frozen_bn_eps`` (0.0: what torchvision sets
    when it loads its COCO_V1 weights); ``settings`` are torchvision's MaskRCNN settings
    (``min_size``, ``max_size``, ``box_score_thresh``, ``box_detections_per_img``, ...).
    """
    _checked("maskrcnn_r50_fpn", settings)
    backbone = _backbone(FrozenBatchNorm2d, None, trainable_backbone_layers)
    for module in backbone.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = frozen_bn_eps
    return _finish(MaskRCNN(backbone, num_classes=num_classes or 91, **settings))


@register(
    "maskrcnn_r50_fpn_v2",
    loader=_load("maskrcnn_r50_fpn_v2"),
    input_side=800,
    served={"cpu": SERVED_CPU},
)
def maskrcnn_r50_fpn_v2(
    *,
    num_classes: int | None = None,
    trainable_backbone_layers: int = 3,
    **settings: Unpack[MaskRCNNSettings],
) -> MaskRCNN:
    """torchvision's ``maskrcnn_resnet50_fpn_v2`` (batch norm in FPN and heads, 2-conv RPN);
    ``settings`` as for ``maskrcnn_r50_fpn``."""
    _checked("maskrcnn_r50_fpn_v2", settings)
    backbone = _backbone(nn.BatchNorm2d, nn.BatchNorm2d, trainable_backbone_layers)
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    model = MaskRCNN(
        backbone,
        num_classes=num_classes or 91,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(256, anchors.num_anchors_per_location()[0], conv_depth=2),
        box_head=FastRCNNConvFCHead((256, 7, 7), [256] * 4, [1024], norm_layer=nn.BatchNorm2d),
        mask_head=MaskRCNNHeads(256, [256] * 4, 1, norm_layer=nn.BatchNorm2d),
        **settings,
    )
    return _finish(model)


__all__ = [
    "COCO_CATEGORIES",
    "FusedMultiScaleRoIAlign",
    "FusedTransform",
    "MaskRCNNSettings",
    "compact_masks",
    "infer_frames",
    "rename_legacy_keys",
]
