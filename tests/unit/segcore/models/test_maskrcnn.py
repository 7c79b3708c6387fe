"""maskrcnn_r50_fpn(_v2) against torchvision's models with the same (seeded random) weights."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection._utils import overwrite_eps

import segcore
from segcore.models.weights import WeightsError

SMALL = {"min_size": 320, "max_size": 480, "box_score_thresh": 0.0}
TORCHVISION = {
    "maskrcnn_r50_fpn": maskrcnn_resnet50_fpn,
    "maskrcnn_r50_fpn_v2": maskrcnn_resnet50_fpn_v2,
}


def _images(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # Several sizes and aspect ratios, including portrait and a small image upscaled.
    return [torch.rand(3, h, w, generator=gen) for h, w in ((240, 320), (300, 200), (128, 400))]


def _reference(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = TORCHVISION[name](weights=None, weights_backbone=None, **SMALL).eval()
    # Random weights give near-uniform classes and mask logits near 0; spread them so that
    # detections differ in class and score, and masks are confident, as trained ones are.
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.normal_(0, 2)
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(50)
    return model


def _zero_backbone_eps(model: torch.nn.Module) -> None:
    """torchvision sets its frozen norms' eps to 0 when loading its COCO_V1 weights
    (``overwrite_eps``); without weights its backbone has plain BatchNorm2d, so set those."""
    overwrite_eps(model, 0.0)
    for module in model.backbone.body.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 0.0


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def assert_same_detections(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for o, t in zip(ours, theirs, strict=True):
        assert o["boxes"].shape[0] == t["boxes"].shape[0] > 0
        torch.testing.assert_close(o["boxes"], t["boxes"], atol=1e-3, rtol=0)
        torch.testing.assert_close(o["scores"], t["scores"], atol=1e-3, rtol=0)
        assert torch.equal(o["labels"], t["labels"])
        assert o["masks"].shape == t["masks"].shape
        ious = _mask_iou(o["masks"][:, 0] > 0.5, t["masks"][:, 0] > 0.5)
        assert (ious >= 0.99).all(), f"lowest mask IoU {ious.min():.4f}"


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_equals_torchvision(compiled_ops: None, name: str) -> None:
    reference = _reference(name, seed=0)
    if name == "maskrcnn_r50_fpn":
        _zero_backbone_eps(reference)  # what torchvision does for its COCO weights
    model = segcore.build(name, weights=reference.state_dict(), **SMALL)
    images = _images(1)
    with torch.inference_mode():
        assert_same_detections(model(images), reference(images))


def test_v1_with_torchvisions_default_eps(compiled_ops: None) -> None:
    reference = _reference("maskrcnn_r50_fpn", seed=2)
    model = segcore.build(
        "maskrcnn_r50_fpn", weights=reference.state_dict(), frozen_bn_eps=1e-5, **SMALL
    )
    images = _images(3)[:1]
    with torch.inference_mode():
        assert_same_detections(model(images), reference(images))


def test_fused_model_gives_the_same_detections(compiled_ops: None) -> None:
    reference = _reference("maskrcnn_r50_fpn_v2", seed=4)
    model = segcore.build(
        "maskrcnn_r50_fpn_v2",
        weights=reference.state_dict(),
        fuse=True,
        channels_last=True,
        **SMALL,
    )
    conv = model.backbone.body.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    images = _images(5)[:1]
    with torch.inference_mode():
        ours, theirs = model(images), reference(images)
    # Folding changes float rounding only: compare the confident detections.
    keep_o, keep_t = ours[0]["scores"] > 0.05, theirs[0]["scores"] > 0.05
    torch.testing.assert_close(
        ours[0]["boxes"][keep_o], theirs[0]["boxes"][keep_t], atol=1e-2, rtol=0
    )


def _legacy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        if key.startswith("roi_heads.mask_head."):
            index, rest = key.removeprefix("roi_heads.mask_head.").split(".0.", 1)
            key = f"roi_heads.mask_head.mask_fcn{int(index) + 1}.{rest}"
        out[key] = value
    return out


def test_loads_older_torchvision_key_spellings(compiled_ops: None) -> None:
    reference = _reference("maskrcnn_r50_fpn", seed=6)
    _zero_backbone_eps(reference)
    legacy = _legacy(reference.state_dict())
    assert "rpn.head.conv.weight" in legacy and "roi_heads.mask_head.mask_fcn4.bias" in legacy
    model = segcore.build("maskrcnn_r50_fpn", weights=legacy, **SMALL)
    images = _images(7)[:1]
    with torch.inference_mode():
        assert_same_detections(model(images), reference(images))


def test_weights_from_a_file(tmp_path, compiled_ops: None) -> None:
    reference = _reference("maskrcnn_r50_fpn_v2", seed=8)
    path = tmp_path / "maskrcnn_v2.pth"
    torch.save(reference.state_dict(), path)
    model = segcore.build("maskrcnn_r50_fpn_v2", weights=path, **SMALL)
    images = _images(9)[:1]
    with torch.inference_mode():
        assert_same_detections(model(images), reference(images))


def test_unknown_and_missing_keys_are_named() -> None:
    state = _reference("maskrcnn_r50_fpn", seed=10).state_dict()
    state["roi_heads.extra_head.weight"] = torch.zeros(1)
    del state["rpn.head.cls_logits.bias"]
    with pytest.raises(WeightsError) as err:
        segcore.build("maskrcnn_r50_fpn", weights=state)
    assert "roi_heads.extra_head.weight" in str(err.value)
    assert "rpn.head.cls_logits.bias" in str(err.value)


def test_shape_mismatch_is_named() -> None:
    state = _reference("maskrcnn_r50_fpn", seed=11).state_dict()
    with pytest.raises(
        WeightsError,
        match=r"roi_heads\.box_predictor\.cls_score\.weight: file \(91, 1024\), model \(3, 1024\)",
    ):
        segcore.build("maskrcnn_r50_fpn", weights=state, num_classes=3)


def test_missing_file_is_named(tmp_path) -> None:
    with pytest.raises(WeightsError, match=r"nope\.pth does not exist"):
        segcore.build("maskrcnn_r50_fpn", weights=tmp_path / "nope.pth")


def _calibrated_state(name: str) -> dict[str, torch.Tensor]:
    """Weights with batch-norm statistics measured on data, as a pretrained backbone has
    (frozen norms with the initial statistics would pass activations through unscaled)."""
    torch.manual_seed(0)
    model = TORCHVISION[name](weights=None, weights_backbone=None, num_classes=3)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _ in range(3):
            model.backbone(torch.randn(2, 3, 160, 192, generator=gen))
    return model.state_dict()


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_one_training_step_lowers_the_loss(compiled_ops: None, name: str) -> None:
    model = segcore.build(
        name, num_classes=3, weights=_calibrated_state(name), min_size=160, max_size=200
    )
    model.train()
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 160, 200, generator=gen) for _ in range(2)]
    masks = torch.zeros(2, 160, 200, dtype=torch.uint8)
    masks[0, 20:90, 30:120] = 1
    masks[1, 60:150, 100:190] = 1
    targets = [
        {
            "boxes": torch.tensor([[30.0, 20, 120, 90]]),
            "labels": torch.tensor([1]),
            "masks": masks[:1],
        },
        {
            "boxes": torch.tensor([[100.0, 60, 190, 150]]),
            "labels": torch.tensor([2]),
            "masks": masks[1:],
        },
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.002)

    def total() -> torch.Tensor:
        torch.manual_seed(2)  # the same RPN and RoI sampling both times
        losses = model(images, targets)
        assert {
            "loss_classifier",
            "loss_box_reg",
            "loss_mask",
            "loss_objectness",
            "loss_rpn_box_reg",
        } <= set(losses)
        return sum(losses.values())

    before = total()
    optimizer.zero_grad()
    before.backward()
    torch.nn.utils.clip_grad_norm_(params, 10.0)
    optimizer.step()
    with torch.no_grad():
        after = total()
    assert after.item() < before.item()


def test_unknown_setting_is_named() -> None:
    with pytest.raises(TypeError, match="maskrcnn_r50_fpn_v2: unknown settings min_sise"):
        segcore.build("maskrcnn_r50_fpn_v2", min_sise=320)


def test_typed_settings_are_torchvisions() -> None:
    import inspect

    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from segcore.models.maskrcnn import MaskRCNNSettings

    accepted = set(inspect.signature(MaskRCNN.__init__).parameters)
    accepted |= set(inspect.signature(GeneralizedRCNNTransform.__init__).parameters)
    assert set(MaskRCNNSettings.__annotations__) <= accepted


def test_uint8_frames_give_torchvisions_detections(compiled_ops: None) -> None:
    """The serving entry (uint8 frames, resize and normalisation in ``preprocess_frames``)
    gives what torchvision gives for the same frames as float images in 0..1. The transform
    is the same for v2; its random batch norms in the heads amplify float rounding of the
    resize into one 28x28 mask at IoU 0.93 of 100 on noise frames, so v1 is the one checked."""
    name = "maskrcnn_r50_fpn"
    from segcore.images import to_float_chw
    from segcore.models.frames import infer_frames

    reference = _reference(name, seed=0)
    if name == "maskrcnn_r50_fpn":
        _zero_backbone_eps(reference)
    model = segcore.build(name, weights=reference.state_dict(), **SMALL)
    gen = torch.Generator().manual_seed(2)
    frames = [
        torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=gen)
        for h, w in ((240, 320), (300, 200), (128, 400))
    ]
    with torch.inference_mode():
        theirs = reference([to_float_chw(f.numpy()) for f in frames])
    ours = infer_frames(model, frames, mask_format="full")
    # The fused resize rounds differently from F.interpolate (float32, 1e-6 of the input
    # range); through 50 random layers that moves boxes by thousandths of a pixel.
    for o, t in zip(ours, theirs, strict=True):
        assert o["boxes"].shape[0] == t["boxes"].shape[0] > 0
        torch.testing.assert_close(o["boxes"], t["boxes"], atol=2e-2, rtol=0)
        torch.testing.assert_close(o["scores"], t["scores"], atol=1e-3, rtol=0)
        assert torch.equal(o["labels"], t["labels"])
        a, b = o["masks"][:, 0] > 0.5, t["masks"][:, 0] > 0.5
        solid = (a | b).flatten(1).sum(1) >= 100  # a few pixels' IoU says nothing
        ious = _mask_iou(a[solid], b[solid])
        assert solid.sum() > 0 and (ious >= 0.99).all(), f"lowest mask IoU {ious.min():.4f}"
