"""The demo model's config: a narrow ResNet-18 YOLACT at 256x256 for the synthetic camera.

Trained by ``segstream train configs/yolact_r18_demo.toml``; its weights ship with segcore
(``DEMO_WEIGHTS``). ``CLASSES`` are its class names, in label order; the synthetic camera
(``segcore.data.synthetic``) draws these shapes.
"""

from __future__ import annotations

from pathlib import Path

from segcore.models.yolact.config import YolactConfig

CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "star", "ring")

DEMO_NAME = "yolact_r18_demo"
DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / f"{DEMO_NAME}.pt"
DEMO_CONFIG = YolactConfig(
    depth=18,
    backbone_width=32,
    fpn_features=96,
    num_classes=len(CLASSES) + 1,
    class_names=CLASSES,
    max_size=256,
    pred_scales=((16,), (32,), (64,), (128,), (256,)),
    freeze_bn=False,
)
