"""YOLACT and YOLACT++ (Bolya et al.), loading the official checkpoints by their own keys.

One concern per module:

- ``config``: ``YolactConfig`` and the variant zoo ``CONFIGS``; ``demo``: the demo model's
  config and class names;
- ``backbone``: the ResNet/DCN backbones (registered in ``segcore.models.backbones``);
  ``fpn`` and ``heads``: the pyramid, prototype net, prediction head and mask IoU branch;
- ``box_utils``: priors, box encoding/decoding, sanitising, IoU (shared by model and loss);
- ``model``: the network (``Yolact``); ``postprocess`` and ``loss``: the functions that
  turn its raw predictions into detections or losses;
- ``checkpoint``: weights loading (the official key clean-up); ``zoo``: registration.

Importing this package registers the architectures and the ResNet backbones (no I/O, no
device queries).
"""

# Importing backbone registers the ResNets; importing zoo registers the architectures.
from segcore.models.yolact.backbone import DCN, BasicBlock, Bottleneck, ResNetBackbone
from segcore.models.yolact.box_utils import (
    decode,
    encode,
    jaccard,
    make_priors,
    point_form,
    sanitize,
)
from segcore.models.yolact.checkpoint import load_yolact, rename_official_keys
from segcore.models.yolact.config import CONFIGS, PLUS_SCALES, YolactConfig, YolactSettings
from segcore.models.yolact.demo import DEMO_CONFIG, DEMO_NAME, DEMO_WEIGHTS
from segcore.models.yolact.fpn import FPN
from segcore.models.yolact.heads import FastMaskIoUNet, PredictionModule, proto_net
from segcore.models.yolact.loss import yolact_losses
from segcore.models.yolact.model import Yolact
from segcore.models.yolact.postprocess import detect
from segcore.models.yolact.zoo import yolact_r18_demo

__all__ = [
    "CONFIGS",
    "DCN",
    "DEMO_CONFIG",
    "DEMO_NAME",
    "DEMO_WEIGHTS",
    "FPN",
    "PLUS_SCALES",
    "BasicBlock",
    "Bottleneck",
    "FastMaskIoUNet",
    "PredictionModule",
    "ResNetBackbone",
    "Yolact",
    "YolactConfig",
    "YolactSettings",
    "decode",
    "detect",
    "encode",
    "jaccard",
    "load_yolact",
    "make_priors",
    "point_form",
    "proto_net",
    "rename_official_keys",
    "sanitize",
    "yolact_losses",
    "yolact_r18_demo",
]
