"""The YOLACT / YOLACT++ network: pre-processing, backbone, FPN, heads, then the losses
(``loss``) in training or the post-processing (``postprocess``) in eval.

Module and parameter names follow the official implementation (``backbone.layers.*``,
``fpn.lat_layers.*``, ``proto_net.*``, ``prediction_layers.0.*``, ``semantic_seg_conv``,
``maskiou_net.maskiou_net.*``), so the official checkpoints load by their own keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcore.models.backbones import build_backbone, list_backbones
from segcore.models.coco import COCO_CLASSES
from segcore.models.yolact.box_utils import make_priors
from segcore.models.yolact.config import YolactConfig
from segcore.models.yolact.fpn import FPN
from segcore.models.yolact.heads import FastMaskIoUNet, PredictionModule, proto_net
from segcore.models.yolact.loss import yolact_losses
from segcore.models.yolact.postprocess import detect
from segcore.ops import preprocess_frames


def _class_names(config: YolactConfig) -> list[str]:
    if config.class_names is not None:
        if len(config.class_names) != config.num_classes - 1:
            raise ValueError(
                f"{len(config.class_names)} class names for {config.num_classes - 1} classes"
            )
        return list(config.class_names)
    if config.num_classes == len(COCO_CLASSES) + 1:
        return list(COCO_CLASSES)
    return [f"class_{i}" for i in range(config.num_classes - 1)]


class Yolact(nn.Module):
    """YOLACT / YOLACT++.

    Eval: ``list[Tensor[3, H, W]]`` (RGB, 0..1) -> one dict per image with ``boxes`` (N, 4)
    xyxy in input pixels, ``scores``, ``labels`` (indices into ``class_names``), ``masks``
    (N, 1, H, W) probabilities, and for YOLACT++ ``mask_scores`` (re-scored by the mask IoU
    branch). Train: ``(images, targets)`` -> the losses (see ``segcore.models.yolact.loss``).
    Serving: :meth:`infer_frames`, uint8 frames and compact masks (``segcore.models.frames``).
    """

    def __init__(self, config: YolactConfig) -> None:
        super().__init__()
        self.config = config
        self.class_names = _class_names(config)
        backbone = f"resnet{config.depth}"
        if backbone not in list_backbones():
            raise ValueError(f"no registered backbone {backbone!r} for depth={config.depth}")
        self.backbone = build_backbone(
            backbone,
            width=config.backbone_width,
            dcn_layers=config.dcn_layers,
            dcn_interval=config.dcn_interval,
        )
        channels: list[int] = list(self.backbone.channels)  # type: ignore[arg-type]
        self.fpn = FPN(channels[1:], config.fpn_features, config.num_downsample)
        self.proto_net = proto_net(config.fpn_features, config.mask_dim)
        self.prediction_layers = nn.ModuleList(
            [
                PredictionModule(
                    config.fpn_features, config.num_priors, config.num_classes, config.mask_dim
                )
            ]
        )
        self.semantic_seg_conv = nn.Conv2d(config.fpn_features, config.num_classes - 1, 1)
        self.maskiou_net = (
            FastMaskIoUNet(config.maskiou_channels, config.num_classes - 1)
            if config.use_maskiou
            else None
        )
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        self._priors: dict[tuple[int, int, int, str], Tensor] = {}

    def train(self, mode: bool = True) -> Yolact:
        """Training keeps the batch norms frozen, as the official training does (unless
        ``freeze_bn=False``: a model trained from scratch needs them learning)."""
        super().train(mode)
        if self.config.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> Any:
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        preds = self.predict(self.preprocess(images))
        if self.training:
            if targets is None:
                raise ValueError("yolact: training needs targets")
            return yolact_losses(preds, sizes, targets, maskiou_net=self.maskiou_net)
        return [
            detect(preds, b, size, self.config, self.maskiou_net) for b, size in enumerate(sizes)
        ]

    def infer_frames(
        self, frames: Tensor | Sequence[Tensor], mask_format: str = "compact"
    ) -> list[dict[str, Tensor]]:
        """Eval on uint8 frames: (B, H, W, 3) RGB, or a sequence of (H, W, 3) when sizes
        differ, on the model's device. ``preprocess_frames`` resizes them to the square input
        and normalises in one pass (what :meth:`preprocess` does to float images); outputs
        as ``forward``'s at each frame's size, masks as ``mask_format`` says ("full" or
        "compact", see ``segcore.models.frames``)."""
        if self.training:
            raise ValueError("yolact: infer_frames is for eval; call model.eval() first")
        size = (self.config.max_size, self.config.max_size)
        mean, std = self.config.mean, self.config.std
        if isinstance(frames, Tensor):
            x = preprocess_frames(frames, size, mean, std)
            sizes = [(int(frames.shape[1]), int(frames.shape[2]))] * frames.shape[0]
        else:
            x = torch.cat([preprocess_frames(f[None], size, mean, std) for f in frames])
            sizes = [(int(f.shape[0]), int(f.shape[1])) for f in frames]
        preds = self.predict(x)
        return [
            detect(preds, b, s, self.config, self.maskiou_net, mask_format)
            for b, s in enumerate(sizes)
        ]

    def preprocess(self, images: list[Tensor]) -> Tensor:
        """Official FastBaseTransform: ``max_size`` square (B, 3, S, S), normalised, RGB."""
        size = (self.config.max_size, self.config.max_size)
        batch = torch.stack(
            [
                F.interpolate(img[None] * 255.0, size=size, mode="bilinear", align_corners=False)[0]
                for img in images
            ]
        )
        mean: Tensor = self.mean  # type: ignore[assignment]
        std: Tensor = self.std  # type: ignore[assignment]
        return (batch - mean) / std

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        """Raw outputs for a preprocessed batch (B, 3, S, S): ``loc`` (B, P, 4), ``conf``
        (B, P, C) logits, ``mask`` (B, P, K) coefficients, ``priors`` (P, 4), ``proto``
        (B, K, S/4, S/4), and in training ``segm`` (B, C - 1, S/8, S/8) logits."""
        outs = self.fpn(self.backbone(x)[1:])
        proto = F.relu(self.proto_net(outs[0]))
        head = self.prediction_layers[0]
        locs, confs, coeffs = zip(*(head(o) for o in outs), strict=True)
        result = {
            "loc": torch.cat(locs, 1),
            "conf": torch.cat(confs, 1),
            "mask": torch.cat(coeffs, 1),
            "priors": self.priors([(o.shape[-2], o.shape[-1]) for o in outs], x.device),
            "proto": proto,
        }
        if self.training:
            result["segm"] = self.semantic_seg_conv(outs[0])
        return result

    def priors(self, sizes: list[tuple[int, int]], device: torch.device) -> Tensor:
        """``(P, 4)`` priors of every level for feature maps of ``sizes`` (h, w), cached."""
        parts = []
        cfg = self.config
        for level, (h, w) in enumerate(sizes):
            key = (level, h, w, str(device))
            if key not in self._priors:
                self._priors[key] = make_priors(
                    h,
                    w,
                    cfg.pred_scales[level],
                    cfg.aspect_ratios,
                    cfg.max_size,
                    cfg.use_square_anchors,
                    device,
                )
            parts.append(self._priors[key])
        return torch.cat(parts)
