"""Models on CUDA: float32 against CPU, and float16 channels-last within a stated tolerance.

Tolerance of float16 + channels-last against float32 on the same GPU: confident detections
(score > 0.3) keep their labels, boxes within 2 px, thresholded masks IoU >= 0.9.
"""

from __future__ import annotations

import pytest
import torch

import segcore

pytestmark = pytest.mark.gpu


def _confident_yolact(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = segcore.build(name)
    with torch.no_grad():
        head = model.prediction_layers[0]
        bias = head.conf_layer.bias.view(model.config.num_priors, model.config.num_classes)
        bias[:, 0] = -4
        bias[:, 3] = 3
        head.mask_layer.weight.mul_(20)
    return model


def _maskrcnn(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = segcore.build(name, min_size=480, max_size=640)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.normal_(0, 2)
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(50)
    return model


def _build(name: str) -> torch.nn.Module:
    return _maskrcnn(name) if name.startswith("maskrcnn") else _confident_yolact(name)


def _match(ours: dict, reference: dict, box_tol: float, mask_iou: float) -> None:
    keep_r = reference["scores"] > 0.3
    keep_o = ours["scores"] > 0.3
    assert keep_r.any()
    for box, label, mask in zip(
        reference["boxes"][keep_r],
        reference["labels"][keep_r],
        reference["masks"][keep_r],
        strict=True,
    ):
        same = (ours["labels"][keep_o] == label) & (
            (ours["boxes"][keep_o].float() - box.float()).abs().amax(dim=1) <= box_tol
        )
        assert same.any(), f"no twin for label {int(label)} at {box.tolist()}"
        twin = ours["masks"][keep_o][same][0, 0].float() > 0.5
        ref = mask[0].float() > 0.5
        union = (twin | ref).sum()
        if union:
            assert (twin & ref).sum() / union >= mask_iou


@pytest.mark.parametrize(
    "name", ["maskrcnn_r50_fpn", "maskrcnn_r50_fpn_v2", "yolact_r50", "yolact_plus_r50"]
)
def test_cuda_float32_equals_cpu(compiled_ops: None, name: str) -> None:
    model = _build(name)
    images = [torch.rand(3, 360, 480, generator=torch.Generator().manual_seed(1))]
    with torch.inference_mode():
        cpu = model(images)[0]
        gpu = model.cuda()([i.cuda() for i in images])[0]
    _match({k: v.cpu() for k, v in gpu.items()}, cpu, box_tol=0.5, mask_iou=0.98)


@pytest.mark.parametrize("name", ["maskrcnn_r50_fpn", "yolact_r50", "yolact_plus_r101"])
def test_cuda_float16_channels_last_within_tolerance(compiled_ops: None, name: str) -> None:
    model = _build(name).cuda()
    images = [torch.rand(3, 360, 480, generator=torch.Generator().manual_seed(2)).cuda()]
    with torch.inference_mode():
        reference = model(images)[0]
        fast = model.half().to(memory_format=torch.channels_last)
        half = fast([i.half() for i in images])[0]
    _match(half, reference, box_tol=2.0, mask_iou=0.9)
