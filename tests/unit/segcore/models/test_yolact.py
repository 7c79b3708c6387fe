"""YOLACT / YOLACT++: official key names and shapes, official post-processing, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import segcore
from segcore.models.weights import WeightsError
from segcore.models.yolact import Yolact, decode

NAMES = ["yolact_plus_r101", "yolact_plus_r50", "yolact_r101", "yolact_r50"]


def official_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict as the official checkpoints store it: our keys are the official ones; the
    files also carry a stray ``backbone.layer*`` entry and a third FPN downsample layer that
    the official loader drops, and no ``num_batches_tracked``."""
    state = {k: v.clone() for k, v in model.state_dict().items() if "num_batches_tracked" not in k}
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    state["fpn.downsample_layers.2.weight"] = torch.zeros(256, 256, 3, 3)
    state["fpn.downsample_layers.2.bias"] = torch.zeros(256)
    return state


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "yolact_r101",
            {
                "backbone.conv1.weight": (64, 3, 7, 7),
                "backbone.layers.2.22.conv3.weight": (1024, 256, 1, 1),
                "backbone.layers.3.0.downsample.0.weight": (2048, 1024, 1, 1),
                "fpn.lat_layers.0.weight": (256, 2048, 1, 1),
                "fpn.lat_layers.2.weight": (256, 512, 1, 1),
                "fpn.pred_layers.1.weight": (256, 256, 3, 3),
                "fpn.downsample_layers.1.weight": (256, 256, 3, 3),
                "proto_net.8.weight": (256, 256, 3, 3),
                "proto_net.10.weight": (32, 256, 1, 1),
                "prediction_layers.0.upfeature.0.weight": (256, 256, 3, 3),
                "prediction_layers.0.bbox_layer.weight": (12, 256, 3, 3),
                "prediction_layers.0.conf_layer.weight": (243, 256, 3, 3),
                "prediction_layers.0.mask_layer.weight": (96, 256, 3, 3),
                "semantic_seg_conv.weight": (80, 256, 1, 1),
            },
        ),
        (
            "yolact_plus_r101",
            {
                "backbone.layers.1.0.conv2.weight": (128, 128, 3, 3),
                "backbone.layers.1.0.conv2.bias": (128,),
                "backbone.layers.1.0.conv2.conv_offset_mask.weight": (27, 128, 3, 3),
                "backbone.layers.1.3.conv2.conv_offset_mask.bias": (27,),
                "backbone.layers.2.21.conv2.conv_offset_mask.weight": (27, 256, 3, 3),
                "backbone.layers.3.0.conv2.conv_offset_mask.weight": (27, 512, 3, 3),
                "prediction_layers.0.conf_layer.weight": (729, 256, 3, 3),
                "prediction_layers.0.mask_layer.weight": (288, 256, 3, 3),
                "maskiou_net.maskiou_net.0.weight": (8, 1, 3, 3),
                "maskiou_net.maskiou_net.10.weight": (80, 128, 1, 1),
            },
        ),
        (
            "yolact_plus_r50",
            {
                "backbone.layers.1.1.conv2.conv_offset_mask.weight": (27, 128, 3, 3),
                "backbone.layers.2.5.conv2.conv_offset_mask.weight": (27, 256, 3, 3),
                "backbone.layers.3.2.conv2.conv_offset_mask.weight": (27, 512, 3, 3),
            },
        ),
    ],
)
def test_official_key_names_and_shapes(name: str, expected: dict[str, tuple[int, ...]]) -> None:
    state = segcore.build(name).state_dict()
    for key, shape in expected.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key


def test_deformable_blocks_follow_the_interval() -> None:
    state = segcore.build("yolact_plus_r101").state_dict()
    dcn = {k.split(".conv2.")[0] for k in state if "conv_offset_mask.weight" in k}
    expected = {"backbone.layers.1.0", "backbone.layers.1.3", "backbone.layers.3.0"}
    expected |= {f"backbone.layers.2.{i}" for i in range(0, 23, 3)}
    assert dcn == expected
    plain = segcore.build("yolact_r50").state_dict()
    assert not any("conv_offset_mask" in k for k in plain)


def _confident(model: Yolact, seed: int) -> Yolact:
    """Random weights with the class logits of a few classes raised, so that detections
    exist, and coefficients spread, so that masks are not uniform."""
    torch.manual_seed(seed)
    with torch.no_grad():
        head = model.prediction_layers[0]
        bias = head.conf_layer.bias.view(model.config.num_priors, model.config.num_classes)
        bias[:, 0] = -4
        bias[:, 3] = 3
        bias[:, 17] = 2.5
        head.mask_layer.weight.mul_(20)
    return model.eval()


@pytest.mark.parametrize("name", ["yolact_r50", "yolact_plus_r50"])
def test_official_checkpoint_layout_loads_and_infers(compiled_ops: None, name: str) -> None:
    source = _confident(segcore.build(name), seed=1)
    model = segcore.build(name, weights=official_state(source))
    images = [torch.rand(3, 240, 320), torch.rand(3, 200, 150)]
    with torch.inference_mode():
        ours, theirs = model(images), source(images)
    for o, t, img in zip(ours, theirs, images, strict=True):
        assert o["boxes"].shape[0] > 0
        for key in o:
            torch.testing.assert_close(o[key], t[key])
        h, w = img.shape[-2:]
        assert o["masks"].shape == (o["boxes"].shape[0], 1, h, w)
        assert (o["boxes"][:, 0] >= 0).all() and (o["boxes"][:, 2] <= w).all()
        assert (o["scores"][:-1] >= o["scores"][1:]).all()
        assert set(o["labels"].tolist()) <= {2, 16}  # class ids 3 and 17 less the background
        assert model.class_names[int(o["labels"][0])] in {"car", "dog"}
        if name.startswith("yolact_plus"):
            # Re-scored by the mask IoU branch (a ReLU output, so >= 0).
            assert o["mask_scores"].shape == o["scores"].shape
            assert (o["mask_scores"] >= 0).all() and not torch.equal(o["mask_scores"], o["scores"])


def official_postprocess(model: Yolact, images: list[torch.Tensor]) -> list[dict]:
    """The official Detect (Fast NMS on the IoU matrix) and postprocess (matmul, crop,
    interpolate), transcribed with plain torch operations."""
    cfg = model.config
    with torch.inference_mode():
        preds = model.predict(model.preprocess(images))
    results = []
    for b, img in enumerate(images):
        h, w = img.shape[-2:]
        conf = F.softmax(preds["conf"][b], -1).t()[1:]
        boxes_all = decode(preds["loc"][b], preds["priors"])
        keep = conf.max(0).values > cfg.nms_conf_thresh
        scores, boxes, coeffs = conf[:, keep], boxes_all[keep], preds["mask"][b][keep]
        scores, idx = scores.sort(1, descending=True)
        idx, scores = idx[:, : cfg.nms_top_k], scores[:, : cfg.nms_top_k]
        c, k = idx.shape
        cand = boxes[idx.reshape(-1)].view(c, k, 4)
        cand_coeffs = coeffs[idx.reshape(-1)].view(c, k, -1)
        lt = torch.max(cand[:, :, None, :2], cand[:, None, :, :2])
        rb = torch.min(cand[:, :, None, 2:], cand[:, None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(3)
        area = (cand[:, :, 2] - cand[:, :, 0]) * (cand[:, :, 3] - cand[:, :, 1])
        iou = (inter / (area[:, :, None] + area[:, None, :] - inter)).triu_(diagonal=1)
        keep = iou.max(dim=1).values <= cfg.nms_thresh
        classes = torch.arange(c)[:, None].expand_as(keep)[keep]
        boxes, scores, coeffs = cand[keep], scores[keep], cand_coeffs[keep]
        scores, order = scores.sort(0, descending=True)
        order = order[: cfg.max_num_detections]
        scores, boxes, coeffs, classes = (
            scores[: cfg.max_num_detections],
            boxes[order],
            coeffs[order],
            classes[order],
        )
        sel = scores > cfg.score_threshold
        boxes, scores, coeffs, classes = boxes[sel], scores[sel], coeffs[sel], classes[sel]
        proto = preds["proto"][b].permute(1, 2, 0)  # (h, w, K) as the official code has it
        ph, pw = proto.shape[:2]
        masks = torch.sigmoid(proto @ coeffs.t())
        x1 = torch.clamp(torch.min(boxes[:, 0], boxes[:, 2]) * pw - 1, min=0)
        x2 = torch.clamp(torch.max(boxes[:, 0], boxes[:, 2]) * pw + 1, max=pw)
        y1 = torch.clamp(torch.min(boxes[:, 1], boxes[:, 3]) * ph - 1, min=0)
        y2 = torch.clamp(torch.max(boxes[:, 1], boxes[:, 3]) * ph + 1, max=ph)
        rows = torch.arange(pw, dtype=x1.dtype)[None, :, None]
        cols = torch.arange(ph, dtype=x1.dtype)[:, None, None]
        crop = (rows >= x1) & (rows < x2) & (cols >= y1) & (cols < y2)
        masks = (masks * crop).permute(2, 0, 1)
        masks = F.interpolate(masks[None], (h, w), mode="bilinear", align_corners=False)[0]
        results.append({"scores": scores, "labels": classes, "masks": masks})
    return results


def test_postprocessing_equals_the_official(compiled_ops: None) -> None:
    model = _confident(segcore.build("yolact_r50"), seed=3)
    images = [torch.rand(3, 180, 240)]
    expected = official_postprocess(model, images)
    with torch.inference_mode():
        got = model(images)
    for g, e in zip(got, expected, strict=True):
        assert g["scores"].shape[0] > 0
        torch.testing.assert_close(g["scores"], e["scores"])
        assert torch.equal(g["labels"], e["labels"])
        torch.testing.assert_close(g["masks"][:, 0], e["masks"], atol=1e-5, rtol=1e-4)


def test_unknown_and_missing_keys_are_named() -> None:
    state = official_state(segcore.build("yolact_r50"))
    state["prediction_layers.1.bbox_layer.weight"] = torch.zeros(12, 256, 3, 3)
    del state["proto_net.10.bias"]
    with pytest.raises(WeightsError) as err:
        segcore.build("yolact_r50", weights=state)
    assert "prediction_layers.1.bbox_layer.weight" in str(err.value)
    assert "proto_net.10.bias" in str(err.value)


def test_plus_weights_do_not_load_into_yolact() -> None:
    state = official_state(segcore.build("yolact_plus_r50"))
    with pytest.raises(WeightsError, match="conv_offset_mask"):
        segcore.build("yolact_r50", weights=state)


def _targets(n_images: int, h: int, w: int) -> list[dict[str, torch.Tensor]]:
    targets = []
    for i in range(n_images):
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        masks[0, 10 + i * 5 : 60, 20:90] = 1
        masks[1, 50:110, 60 + i * 3 : 140] = 1
        boxes = torch.tensor([[20.0, 10 + i * 5, 90, 60], [60.0 + i * 3, 50, 140, 110]])
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 5]), "masks": masks})
    return targets


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_lowers_the_loss(compiled_ops: None, name: str) -> None:
    torch.manual_seed(0)
    model = segcore.build(name, max_size=288)  # the smallest the mask IoU branch takes
    model.train()
    gen = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 120, 160, generator=gen) for _ in range(2)]
    targets = _targets(2, 120, 160)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3)

    def total() -> torch.Tensor:
        torch.manual_seed(5)
        losses = model(images, targets)
        expected = {"loss_box", "loss_conf", "loss_mask", "loss_semantic"}
        if name.startswith("yolact_plus"):
            expected.add("loss_maskiou")
        assert set(losses) == expected
        assert all(torch.isfinite(v) for v in losses.values())
        return sum(losses.values())

    before = total()
    optimizer.zero_grad()
    before.backward()
    torch.nn.utils.clip_grad_norm_(params, 10.0)
    optimizer.step()
    with torch.no_grad():
        after = total()
    assert after.item() < before.item()


def test_training_keeps_batch_norms_frozen() -> None:
    model = segcore.build("yolact_r50").train()
    assert model.training
    assert all(not m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize(("depth", "channels"), [(18, 512), (34, 512), (50, 2048)])
def test_backbone_depths(compiled_ops: None, depth: int, channels: int) -> None:
    model = _confident(segcore.build("yolact_r50", depth=depth, max_size=256), seed=7)
    assert model.fpn.lat_layers[0].in_channels == channels
    with torch.inference_mode():
        [out] = model([torch.rand(3, 100, 120)])
    assert out["masks"].shape[1:] == (1, 100, 120)


def test_unknown_setting_is_named() -> None:
    with pytest.raises(TypeError, match="unknown settings mask_dimm"):
        segcore.build("yolact_r50", mask_dimm=16)
