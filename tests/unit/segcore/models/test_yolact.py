"""YOLACT / YOLACT++: official key names and shapes, official post-processing, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import segcore
from segcore.models.weights import WeightsError
from segcore.models.yolact import Yolact, decode

NAMES = ["yolact_plus_r101", "yolact_plus_r50", "yolact_r101", "yolact_r50"]

#: Key -> shape of the official modules per variant; the file says where it comes from.
OFFICIAL = json.loads((Path(__file__).parent / "yolact_official_keys.json").read_text())


def official_keys(name: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in OFFICIAL["variants"][name]["keys"].items()}


def official_state(name: str, values: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """A checkpoint with the official keys and shapes of ``name`` (from the manifest, not from
    our model): the values of ``values``' entries of the same key (random ones without it).
    Like the official files, it also carries a stray ``backbone.layer*`` entry and a third
    FPN downsample layer that the official loader drops, and no ``num_batches_tracked``."""
    ours = values.state_dict() if values is not None else {}
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in official_keys(name).items():
        if key.endswith("num_batches_tracked"):
            continue
        if values is None:
            state[key] = torch.randn(shape, generator=gen)
        else:
            assert key in ours, f"our {name} has no {key}"
            state[key] = ours[key].clone()
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    state["fpn.downsample_layers.2.weight"] = torch.zeros(256, 256, 3, 3)
    state["fpn.downsample_layers.2.bias"] = torch.zeros(256)
    return state


def test_the_manifest_lists_every_variant() -> None:
    assert sorted(OFFICIAL["variants"]) == sorted(NAMES)
    assert "dbolya/yolact" in OFFICIAL["source"]


@pytest.mark.parametrize("name", NAMES)
def test_keys_and_shapes_equal_the_official_modules(name: str) -> None:
    ours = {k: tuple(v.shape) for k, v in segcore.build(name).state_dict().items()}
    official = official_keys(name)
    assert sorted(set(ours) - set(official)) == []
    assert sorted(set(official) - set(ours)) == []
    assert {k: s for k, s in ours.items() if official[k] != s} == {}


@pytest.mark.parametrize("name", NAMES)
def test_a_checkpoint_of_the_official_layout_loads(name: str) -> None:
    state = official_state(name)
    model = segcore.build(name, weights=state)
    loaded = model.state_dict()
    for key, value in state.items():
        if key.startswith("backbone.layer1.") or key.startswith("fpn.downsample_layers.2."):
            assert key not in loaded  # dropped, as the official loader does
        else:
            assert torch.equal(loaded[key], value), key


def test_official_batch_norm_counters_load_too() -> None:
    state = official_state("yolact_r50")
    counters = [k for k in official_keys("yolact_r50") if k.endswith("num_batches_tracked")]
    assert counters
    state.update({k: torch.tensor(7) for k in counters})
    loaded = segcore.build("yolact_r50", weights=state).state_dict()
    assert all(int(loaded[k]) == 7 for k in counters)


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
    model = segcore.build(name, weights=official_state(name, source))
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
    state = official_state("yolact_r50")
    state["prediction_layers.1.bbox_layer.weight"] = torch.zeros(12, 256, 3, 3)
    del state["proto_net.10.bias"]
    with pytest.raises(WeightsError) as err:
        segcore.build("yolact_r50", weights=state)
    assert "prediction_layers.1.bbox_layer.weight" in str(err.value)
    assert "proto_net.10.bias" in str(err.value)


def test_plus_weights_do_not_load_into_yolact() -> None:
    state = official_state("yolact_plus_r50")
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


def test_builder_settings_are_the_config_fields_with_their_types() -> None:
    from typing import get_type_hints

    from segcore.models.yolact import YolactConfig, YolactSettings

    config = get_type_hints(YolactConfig)
    settings = get_type_hints(YolactSettings)
    del config["num_classes"]  # a builder argument of its own
    assert settings == config


def test_unknown_depth_is_named() -> None:
    with pytest.raises(ValueError, match="resnet152"):
        segcore.build("yolact_r50", depth=152)
