"""PANet (Liu et al., CVPR 2018): Mask R-CNN with bottom-up path augmentation, adaptive
feature pooling and fully-connected fusion in the mask head.

- ``parts``: the modules PANet changes (backbone path, all-levels pooling, heads);
- ``model``: the assembly on torchvision's MaskRCNN and ``panet_r50_fpn`` (registered);
- ``checkpoint``: the official checkpoints' name map and the weights loader.

The demo model ``panet_r18_demo`` is registered with ``maskrcnn_r18_demo`` in
``segcore.models.rcnn_demo``. Importing this package registers ``panet_r50_fpn`` (no I/O).
"""

from segcore.models.panet.checkpoint import (
    is_official,
    official_loader,
    official_name,
    rename_official_keys,
)
from segcore.models.panet.model import (
    CAFFE_MEAN,
    CAFFE_STD,
    COCO_CLASSES,
    assemble_panet,
    caffe_resnet50,
    panet_r50_fpn,
)
from segcore.models.panet.parts import (
    LEVELS,
    AdaptiveConvBoxHead,
    AdaptiveMLPBoxHead,
    AllLevelsRoIPool,
    BottomUpPath,
    FusedMaskHead,
    FusedMaskPredictor,
    PyramidBackbone,
    group_norm,
)

__all__ = [
    "CAFFE_MEAN",
    "CAFFE_STD",
    "COCO_CLASSES",
    "LEVELS",
    "AdaptiveConvBoxHead",
    "AdaptiveMLPBoxHead",
    "AllLevelsRoIPool",
    "BottomUpPath",
    "FusedMaskHead",
    "FusedMaskPredictor",
    "PyramidBackbone",
    "assemble_panet",
    "caffe_resnet50",
    "group_norm",
    "is_official",
    "official_loader",
    "official_name",
    "panet_r50_fpn",
    "rename_official_keys",
]
