"""YOLACT and YOLACT++ (Bolya et al.), loading the official checkpoints by their own keys.

Module and parameter names follow the official implementation (``backbone.layers.*``,
``fpn.lat_layers.*``, ``proto_net.*``, ``prediction_layers.0.*``, ``semantic_seg_conv``,
``maskiou_net.maskiou_net.*``), so ``yolact_base_54_800000.pth`` and its siblings load as
they are. Post-processing runs on segstream's ops: ``fast_nms`` (YOLACT's Fast NMS without
the IoU matrix) and ``assemble_masks`` (prototype combination, sigmoid and crop in one pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from segcore.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from segcore.models.coco import COCO_CLASSES
from segcore.models.weights import load_strict, read_state_dict
from segcore.ops import assemble_masks, fast_nms
from segcore.registry import register

# YOLACT++'s anchor scales: three octave steps per level.
_PLUS_SCALES = tuple(tuple(i * 2 ** (j / 3.0) for j in range(3)) for i in (24, 48, 96, 192, 384))


@dataclass(frozen=True)
class YolactConfig:
    """One YOLACT variant (the fields of the official config that differ between them)."""

    depth: int
    backbone_width: int = 64  # channels of the first stage; 64 in every official model
    dcn_layers: tuple[int, int, int, int] = (0, 0, 0, 0)
    dcn_interval: int = 1
    pred_scales: tuple[tuple[float, ...], ...] = ((24,), (48,), (96,), (192,), (384,))
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)
    use_square_anchors: bool = True
    use_maskiou: bool = False
    num_classes: int = 81  # with the background
    max_size: int = 550
    mask_dim: int = 32
    fpn_features: int = 256
    num_downsample: int = 2
    nms_top_k: int = 200
    nms_conf_thresh: float = 0.05
    nms_thresh: float = 0.5
    max_num_detections: int = 100
    score_threshold: float = 0.05
    # RGB order (the official BGR MEANS and STD, reversed).
    mean: tuple[float, float, float] = (123.68, 116.78, 103.94)
    std: tuple[float, float, float] = (58.40, 57.12, 57.38)
    maskiou_channels: tuple[int, ...] = field(default=(8, 16, 32, 64, 128))
    class_names: tuple[str, ...] | None = None  # COCO's 80 when None and num_classes is 81
    freeze_bn: bool = True  # the official training keeps the pretrained statistics

    @property
    def num_priors(self) -> int:
        return len(self.aspect_ratios) * len(self.pred_scales[0])


CONFIGS = {
    "yolact_r50": YolactConfig(depth=50),
    "yolact_r101": YolactConfig(depth=101),
    "yolact_plus_r50": YolactConfig(
        depth=50,
        dcn_layers=(0, 4, 6, 3),
        pred_scales=_PLUS_SCALES,
        use_square_anchors=False,
        use_maskiou=True,
    ),
    "yolact_plus_r101": YolactConfig(
        depth=101,
        dcn_layers=(0, 4, 23, 3),
        dcn_interval=3,
        pred_scales=_PLUS_SCALES,
        use_square_anchors=False,
        use_maskiou=True,
    ),
}

#: The demo model: a narrow ResNet-18 YOLACT at 256x256 for the synthetic camera's classes,
#: trained by ``segstream train configs/yolact_r18_demo.toml``; its weights ship with segcore.
DEMO_NAME = "yolact_r18_demo"
DEMO_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / f"{DEMO_NAME}.pt"
DEMO_CONFIG = YolactConfig(
    depth=18,
    backbone_width=32,
    fpn_features=96,
    num_classes=len(SYNTHETIC_CLASSES) + 1,
    class_names=SYNTHETIC_CLASSES,
    max_size=256,
    pred_scales=((16,), (32,), (64,), (128,), (256,)),
    freeze_bn=False,
)

_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class DCN(nn.Module):
    """Modulated deformable convolution (DCNv2) with the official checkpoint's parameters:
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
    """YOLACT's ResNet (18, 34, 50 or 101 layers; deformable 3x3 convolutions in the blocks
    ``dcn_layers`` and ``dcn_interval`` pick): returns the four stages' outputs (C2..C5)."""

    def __init__(
        self, depth: int, dcn_layers: tuple[int, ...], dcn_interval: int, width: int = 64
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layers = nn.ModuleList()
        self.channels: list[int] = []
        if depth not in _BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(_BLOCKS)}, got {depth}")
        blocks = _BLOCKS[depth]
        block: type[Bottleneck] | type[BasicBlock] = Bottleneck if depth >= 50 else BasicBlock
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


class FPN(nn.Module):
    """YOLACT's FPN: lateral 1x1 and prediction 3x3 convolutions (ReLU after), bilinear
    upsampling, and strided 3x3 convolutions for the extra levels."""

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


class Upsample2x(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def proto_net(features: int, mask_dim: int) -> nn.Sequential:
    """The official ``mask_proto_net`` (3 convs, 2x upsample, conv, 1x1 to the prototypes);
    indices 0, 2, 4, 8, 10 hold the convolutions, as the official ``make_net`` numbers them."""

    def conv3() -> list[nn.Module]:
        return [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]

    layers = [*conv3(), *conv3(), *conv3(), Upsample2x(), nn.ReLU(inplace=True), *conv3()]
    layers.append(nn.Conv2d(features, mask_dim, 1))
    return nn.Sequential(*layers)


class PredictionModule(nn.Module):
    """The shared head: box offsets, class logits and mask coefficients per prior."""

    def __init__(self, config: YolactConfig) -> None:
        super().__init__()
        c, a = config.fpn_features, config.num_priors
        self.num_classes, self.mask_dim = config.num_classes, config.mask_dim
        self.upfeature = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(c, a * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(c, a * config.num_classes, 3, padding=1)
        self.mask_layer = nn.Conv2d(c, a * config.mask_dim, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b = x.shape[0]
        x = self.upfeature(x)
        loc = self.bbox_layer(x).permute(0, 2, 3, 1).reshape(b, -1, 4)
        conf = self.conf_layer(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
        coeff = self.mask_layer(x).permute(0, 2, 3, 1).reshape(b, -1, self.mask_dim)
        return loc, conf, torch.tanh(coeff)


class FastMaskIoUNet(nn.Module):
    """YOLACT++'s mask re-scoring branch: predicts each mask's IoU with its object."""

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


def make_priors(
    config: YolactConfig, conv_h: int, conv_w: int, scales: tuple[float, ...], device: torch.device
) -> Tensor:
    """(conv_h * conv_w * A, 4) priors (cx, cy, w, h) relative to the image, official order."""
    rows = []
    for j in range(conv_h):
        for i in range(conv_w):
            x = (i + 0.5) / conv_w
            y = (j + 0.5) / conv_h
            for scale in scales:
                for ar in config.aspect_ratios:
                    ar = math.sqrt(ar)
                    w = scale * ar / config.max_size
                    h = w if config.use_square_anchors else scale / ar / config.max_size
                    rows.append((x, y, w, h))
    return torch.tensor(rows, dtype=torch.float32, device=device)


def decode(loc: Tensor, priors: Tensor) -> Tensor:
    """YOLACT's box decoding (variances 0.1, 0.2) to relative xyxy."""
    centre = priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * 0.2)
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def sanitize(x1: Tensor, x2: Tensor, size: int, padding: int = 0) -> tuple[Tensor, Tensor]:
    """YOLACT's sanitize_coordinates (no cast): relative -> pixels, ordered, padded, clamped."""
    x1, x2 = x1 * size, x2 * size
    lo, hi = torch.minimum(x1, x2), torch.maximum(x1, x2)
    return torch.clamp(lo - padding, min=0), torch.clamp(hi + padding, max=size)


class Yolact(nn.Module):
    """YOLACT / YOLACT++.

    Eval: ``list[Tensor[3, H, W]]`` (RGB, 0..1) -> one dict per image with ``boxes`` (N, 4)
    xyxy in input pixels, ``scores``, ``labels`` (indices into ``class_names``), ``masks``
    (N, 1, H, W) probabilities, and for YOLACT++ ``mask_scores`` (re-scored by the mask IoU
    branch). Train: ``(images, targets)`` -> the losses (see ``segcore.models.yolact_loss``).
    """

    def __init__(self, config: YolactConfig) -> None:
        super().__init__()
        self.config = config
        if config.class_names is not None:
            if len(config.class_names) != config.num_classes - 1:
                raise ValueError(
                    f"{len(config.class_names)} class names for {config.num_classes - 1} classes"
                )
            self.class_names = list(config.class_names)
        elif config.num_classes == len(COCO_CLASSES) + 1:
            self.class_names = list(COCO_CLASSES)
        else:
            self.class_names = [f"class_{i}" for i in range(config.num_classes - 1)]
        self.backbone = ResNetBackbone(
            config.depth, config.dcn_layers, config.dcn_interval, config.backbone_width
        )
        self.fpn = FPN(self.backbone.channels[1:], config.fpn_features, config.num_downsample)
        self.proto_net = proto_net(config.fpn_features, config.mask_dim)
        self.prediction_layers = nn.ModuleList([PredictionModule(config)])
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

    def preprocess(self, images: list[Tensor]) -> Tensor:
        """Official FastBaseTransform: resize to max_size square, normalise, RGB."""
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

    def priors(self, sizes: list[tuple[int, int]], device: torch.device) -> Tensor:
        parts = []
        for level, (h, w) in enumerate(sizes):
            key = (level, h, w, str(device))
            if key not in self._priors:
                scales = self.config.pred_scales[level]
                self._priors[key] = make_priors(self.config, h, w, scales, device)
            parts.append(self._priors[key])
        return torch.cat(parts)

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        """Raw outputs of the network for a preprocessed batch (B, 3, S, S)."""
        outs = self.fpn(self.backbone(x)[1:])
        proto = F.relu(self.proto_net(outs[0]))  # (B, K, S/4, S/4)
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

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> Any:
        batch = self.preprocess(images)
        preds = self.predict(batch)
        if self.training:
            if targets is None:
                raise ValueError("yolact: training needs targets")
            from segcore.models.yolact_loss import yolact_losses

            return yolact_losses(self, preds, images, targets)
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        return [self._detect(preds, b, size) for b, size in enumerate(sizes)]

    def _detect(self, preds: dict[str, Tensor], b: int, size: tuple[int, int]) -> dict[str, Tensor]:
        cfg = self.config
        height, width = size
        device = preds["loc"].device
        # Post-processing in float32 whatever the network ran in (float16 on GPU).
        scores_all = F.softmax(preds["conf"][b].float(), dim=-1)[:, 1:].t()  # (C, P)
        keep = scores_all.max(dim=0).values > cfg.nms_conf_thresh
        boxes = decode(preds["loc"][b][keep].float(), preds["priors"][keep].float())
        boxes, scores, classes, index = fast_nms(
            boxes,
            scores_all[:, keep].contiguous(),
            cfg.nms_thresh,
            cfg.nms_top_k,
            float("-inf"),
            cfg.max_num_detections,
            return_indices=True,
        )
        confident = scores > cfg.score_threshold
        boxes, scores, classes = boxes[confident], scores[confident], classes[confident]
        coeffs = preds["mask"][b][keep][index[confident]]
        proto = preds["proto"][b]  # (K, h, w)
        ph, pw = proto.shape[-2:]
        x1, x2 = sanitize(boxes[:, 0], boxes[:, 2], pw, padding=1)
        y1, y2 = sanitize(boxes[:, 1], boxes[:, 3], ph, padding=1)
        crop = torch.stack([x1, y1, x2, y2], dim=1)
        masks = assemble_masks(proto, coeffs.to(proto.dtype), crop.to(proto.dtype))
        result: dict[str, Tensor] = {}
        if self.maskiou_net is not None and masks.shape[0]:
            iou = self.maskiou_net(masks[:, None])
            result["mask_scores"] = scores * iou.gather(1, classes[:, None]).squeeze(1)
        elif self.maskiou_net is not None:
            result["mask_scores"] = scores.clone()
        if masks.shape[0]:
            masks = F.interpolate(masks[None], size, mode="bilinear", align_corners=False)[0]
        else:
            masks = masks.new_zeros((0, height, width))
        bx1, bx2 = sanitize(boxes[:, 0], boxes[:, 2], width)
        by1, by2 = sanitize(boxes[:, 1], boxes[:, 3], height)
        result.update(
            boxes=torch.stack([bx1, by1, bx2, by2], dim=1),
            scores=scores,
            labels=classes.to(torch.int64).to(device),
            masks=masks[:, None],
        )
        return result


def rename_official_keys(
    num_downsample: int,
) -> Any:
    """The official loader's clean-up: stray ``backbone.layer*`` keys (not ``layers``) and
    ``fpn.downsample_layers.K`` beyond the configured count are dropped."""

    def rename(state: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for key, value in state.items():
            if key.startswith("backbone.layer") and not key.startswith("backbone.layers"):
                continue
            if (
                key.startswith("fpn.downsample_layers.")
                and int(key.split(".")[2]) >= num_downsample
            ):
                continue
            out[key] = value
        return out

    return rename


def _load(name: str) -> Any:
    def load(model: nn.Module, weights: Any) -> None:
        assert isinstance(model, Yolact)
        load_strict(
            model,
            read_state_dict(weights),
            what=name,
            rename=rename_official_keys(model.config.num_downsample),
        )

    return load


def _builder(name: str, base: YolactConfig) -> Any:
    def build(*, num_classes: int | None = None, **overrides: Any) -> Yolact:
        fields = dict(overrides)
        if num_classes is not None:
            fields["num_classes"] = num_classes  # with the background, as torchvision counts
        unknown = sorted(set(fields) - set(base.__dict__))
        if unknown:
            raise TypeError(f"{name}: unknown settings {', '.join(unknown)}")
        return Yolact(YolactConfig(**{**base.__dict__, **fields}))

    register(name, loader=_load(name), input_side=base.max_size)(build)
    return build


for _name, _config in CONFIGS.items():
    _builder(_name, _config)


@register(DEMO_NAME, loader=_load(DEMO_NAME), input_side=DEMO_CONFIG.max_size)
def yolact_r18_demo(*, pretrained: bool = True, **overrides: Any) -> Yolact:
    """The demo model, with its shipped weights unless ``pretrained=False`` (for training)."""
    if overrides.get("num_classes") not in (None, DEMO_CONFIG.num_classes):
        raise TypeError(f"{DEMO_NAME} has {DEMO_CONFIG.num_classes} classes")
    overrides.pop("num_classes", None)
    model = Yolact(YolactConfig(**{**DEMO_CONFIG.__dict__, **overrides}))
    if pretrained:
        if not DEMO_WEIGHTS.is_file():
            from segcore.models.weights import WeightsError

            raise WeightsError(
                f"{DEMO_WEIGHTS} is missing; train it with "
                "`segstream train configs/yolact_r18_demo.toml` or pass pretrained=False"
            )
        _load(DEMO_NAME)(model, DEMO_WEIGHTS)
    return model
