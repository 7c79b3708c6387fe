"""YOLACT's variants as small typed configs (no global configuration).

``YolactConfig`` holds the fields of the official config that differ between the variants;
``CONFIGS`` is the zoo of official COCO variants (registered by ``zoo``);
``YolactSettings`` types the overrides a builder accepts (one per ``YolactConfig`` field).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

# YOLACT++'s anchor scales: three octave steps per level.
PLUS_SCALES = tuple(tuple(i * 2 ** (j / 3.0) for j in range(3)) for i in (24, 48, 96, 192, 384))


@dataclass(frozen=True)
class YolactConfig:
    """One YOLACT variant (the fields of the official config that differ between them).

    ``depth`` picks the registered backbone ``resnet{depth}``; ``num_classes`` counts the
    background; ``pred_scales`` are anchor sizes in input pixels per FPN level (P3..P7);
    ``mean`` and ``std`` are per RGB channel on the 0..255 scale.
    """

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
        """Anchors per cell: aspect ratios times scales per level."""
        return len(self.aspect_ratios) * len(self.pred_scales[0])


class YolactSettings(TypedDict, total=False):
    """The keyword overrides of a YOLACT builder: any ``YolactConfig`` field but ``num_classes``
    (a builder argument of its own), with the field's type."""

    depth: int
    backbone_width: int
    dcn_layers: tuple[int, int, int, int]
    dcn_interval: int
    pred_scales: tuple[tuple[float, ...], ...]
    aspect_ratios: tuple[float, ...]
    use_square_anchors: bool
    use_maskiou: bool
    max_size: int
    mask_dim: int
    fpn_features: int
    num_downsample: int
    nms_top_k: int
    nms_conf_thresh: float
    nms_thresh: float
    max_num_detections: int
    score_threshold: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    maskiou_channels: tuple[int, ...]
    class_names: tuple[str, ...] | None
    freeze_bn: bool


CONFIGS: dict[str, YolactConfig] = {
    "yolact_r50": YolactConfig(depth=50),
    "yolact_r101": YolactConfig(depth=101),
    "yolact_plus_r50": YolactConfig(
        depth=50,
        dcn_layers=(0, 4, 6, 3),
        pred_scales=PLUS_SCALES,
        use_square_anchors=False,
        use_maskiou=True,
    ),
    "yolact_plus_r101": YolactConfig(
        depth=101,
        dcn_layers=(0, 4, 23, 3),
        dcn_interval=3,
        pred_scales=PLUS_SCALES,
        use_square_anchors=False,
        use_maskiou=True,
    ),
}
