"""PANet: its parts do what the paper says, the models build, run, train and load weights,
and the official checkpoints' keys map onto ours exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.ops import roi_align

import segcore
from segcore.models.panet import (
    COCO_CLASSES,
    AllLevelsRoIPool,
    BottomUpPath,
    FusedMaskHead,
    FusedMaskPredictor,
    official_name,
    rename_official_keys,
)
from segcore.models.panet.parts import _max_over_levels
from segcore.models.weights import WeightsError

MANIFEST = json.loads((Path(__file__).parent / "panet_official_keys.json").read_text())
SMALL = {"min_size": 320, "max_size": 480, "box_score_thresh": 0.0}
NAMES = {"panet_r50_fpn": SMALL, "panet_r18_demo": {"pretrained": False, "box_score_thresh": 0.0}}


def official_keys() -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in MANIFEST["keys"].items()}


def official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint with the official keys and shapes (from the manifest), random values."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) for k, shape in official_keys().items()}


def _images(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    # Several sizes and aspect ratios, a portrait and a small one upscaled among them.
    return [torch.rand(3, h, w, generator=gen) for h, w in ((240, 320), (300, 200), (128, 400))]


# -- the parts ------------------------------------------------------------------------------


def test_bottom_up_path_starts_at_p2_and_halves_each_level() -> None:
    torch.manual_seed(0)
    path = BottomUpPath(16, 4, gn_groups=4).eval()
    pyramid = [torch.randn(2, 16, 32 >> i, 48 >> i) for i in range(4)]
    levels = path(pyramid)
    assert torch.equal(levels[0], pyramid[0])  # N2 = P2
    assert [tuple(n.shape) for n in levels] == [tuple(p.shape) for p in pyramid]
    # N3 = fuse(down(N2) + P3), each a conv3x3 with GroupNorm and ReLU (so never negative).
    expected = path.fuse[0](path.down[0](levels[0]) + pyramid[1])
    torch.testing.assert_close(levels[1], expected)
    assert all(bool((n >= 0).all()) for n in levels[1:])
    assert path.down[0][0].stride == (2, 2) and path.fuse[0][0].stride == (1, 1)


def test_adaptive_pooling_takes_every_roi_from_every_level() -> None:
    gen = torch.Generator().manual_seed(1)
    features = {str(i): torch.randn(2, 8, 64 >> i, 80 >> i, generator=gen) for i in range(4)}
    boxes = [torch.tensor([[4.0, 8.0, 100.0, 90.0], [0.0, 0.0, 20.0, 30.0]]),
             torch.tensor([[50.0, 60.0, 250.0, 240.0]])]  # fmt: skip
    pooled = AllLevelsRoIPool(["0", "1", "2", "3"], 7, 2)(features, boxes, [(256, 320)] * 2)
    assert pooled.shape == (4, 3, 8, 7, 7)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1)
                      for i, b in enumerate(boxes)])  # fmt: skip
    for level in range(4):
        expected = roi_align(features[str(level)], rois, 7, 1 / 4 / 2**level, 2, False)
        torch.testing.assert_close(pooled[level], expected)


def test_levels_fuse_by_element_wise_max_after_their_own_first_layer() -> None:
    layers = torch.nn.ModuleList(torch.nn.Linear(3, 2) for _ in range(4))
    pooled = torch.randn(4, 5, 3)
    fused = _max_over_levels(layers, pooled)
    each = torch.stack([layer(level) for layer, level in zip(layers, pooled, strict=True)])
    torch.testing.assert_close(fused, each.max(0).values)
    with pytest.raises(ValueError, match="3 levels, heads 4"):
        _max_over_levels(layers, pooled[:3])


def test_fc_fusion_adds_one_shared_map_to_every_class() -> None:
    torch.manual_seed(0)
    head = FusedMaskHead(16, 4, 14, channels=32, gn_groups=8).eval()
    predictor = FusedMaskPredictor(32, 6).eval()
    pooled = torch.randn(4, 3, 16, 14, 14)
    with torch.no_grad():
        features, fc = head(pooled)
        assert features.shape == (3, 32, 14, 14) and fc.shape == (3, 1, 28, 28)
        logits = predictor((features, fc))
        assert logits.shape == (3, 6, 28, 28)
        per_class = predictor.mask_fcn_logits(torch.relu(predictor.conv5_mask(features)))
        torch.testing.assert_close(logits - per_class, fc.expand(-1, 6, -1, -1))
        head.fc.bias.fill_(3.0)  # the fc branch's map moves every class's logits alike
        shifted = predictor(head(pooled))
    assert bool((shifted - logits > 0).all())
    torch.testing.assert_close((shifted - logits)[:, 0], (shifted - logits)[:, 5])


# -- the models -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMES))
def test_builds_and_segments_images_of_several_sizes(name: str) -> None:
    torch.manual_seed(0)
    model = segcore.build(name, **NAMES[name])
    images = _images(1)
    with torch.inference_mode():
        outputs = model(images)
    assert len(outputs) == len(images)
    for image, out in zip(images, outputs, strict=True):
        n = out["boxes"].shape[0]
        assert n > 0
        assert out["scores"].shape == out["labels"].shape == (n,)
        assert out["masks"].shape == (n, 1, *image.shape[-2:])
        assert int(out["labels"].min()) >= 1 and int(out["labels"].max()) < len(model.class_names)


def test_the_official_model_has_the_coco_classes() -> None:
    model = segcore.build("panet_r50_fpn")
    assert model.class_names == COCO_CLASSES and len(COCO_CLASSES) == 81
    assert model.roi_heads.box_predictor.cls_score.out_features == 81


@pytest.mark.parametrize("name", sorted(NAMES))
def test_one_training_step_lowers_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = segcore.build(name, **NAMES[name]).train()
    images = _images(2)[:2]
    targets = []
    for image in images:
        h, w = image.shape[-2:]
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        masks[0, 20:90, 30:120] = 1
        masks[1, h // 2 : h - 10, w // 3 : w - 20] = 1
        boxes = torch.tensor(
            [[30.0, 20.0, 120.0, 90.0], [w // 3, h // 2, w - 20, h - 10]], dtype=torch.float32
        )
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks})
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.0)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same anchor and RoI sampling both times
        return sum(model(images, targets).values())

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert torch.isfinite(before) and float(after) < float(before.detach())


def test_our_checkpoints_load_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = segcore.build("panet_r18_demo", pretrained=False)
    path = tmp_path / "panet.pt"
    torch.save(
        {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path
    )
    loaded = segcore.build("panet_r18_demo", pretrained=False, weights=path)
    for key, value in loaded.state_dict().items():
        assert value.dtype == model.state_dict()[key].dtype
        torch.testing.assert_close(value, model.state_dict()[key].half().to(value.dtype))


# -- the official checkpoints ---------------------------------------------------------------


def test_the_manifest_comes_from_the_official_definitions() -> None:
    assert "ShuLiu1993/PANet" in MANIFEST["source"]
    assert MANIFEST["config"] == "e2e_panet_R-50-FPN_2x_mask"


def test_the_name_map_covers_the_official_keys_exactly() -> None:
    official = official_keys()
    assert [k for k in official if official_name(k) is None] == []
    renamed = {k: tuple(v.shape) for k, v in rename_official_keys(official_state()).items()}
    ours = {k: tuple(v.shape) for k, v in segcore.build("panet_r50_fpn").state_dict().items()}
    assert sorted(set(renamed) - set(ours)) == []
    assert sorted(set(ours) - set(renamed)) == []
    assert {k: (s, ours[k]) for k, s in renamed.items() if ours[k] != s} == {}
    # Everything but the frozen norms' running statistics comes from the file.
    filled = {k for k in ours if k.endswith(("running_mean", "running_var"))}
    assert len(official) == len(ours) - len(filled)


def test_an_official_checkpoint_loads_by_its_own_keys(tmp_path: Path) -> None:
    state = official_state(3)
    path = tmp_path / "panet_official.pth"
    torch.save({"step": 1, "model": state}, path)  # the official files wrap the state dict
    model = segcore.build("panet_r50_fpn", weights=path)
    ours = model.state_dict()
    conv1 = state["Conv_Body.conv_body.res1.conv1.weight"]
    assert torch.equal(ours["backbone.body.conv1.weight"], conv1[:, [2, 1, 0]])  # BGR -> RGB
    pairs = {
        "Conv_Body.conv_top.0.weight": "backbone.fpn.inner_blocks.3.0.weight",
        "Conv_Body.topdown_lateral_modules.2.conv_lateral.1.bias": (
            "backbone.fpn.inner_blocks.0.1.bias"
        ),
        "Conv_Body.posthoc_modules.0.0.weight": "backbone.fpn.layer_blocks.3.0.weight",
        "Conv_Body.panet_buttomup_conv2_modules.1.0.bias": "backbone.bottom_up.fuse.1.0.bias",
        "Conv_Body.conv_body.res4.5.bn3.weight": "backbone.body.layer3.5.bn3.weight",
        "RPN.FPN_RPN_conv.weight": "rpn.head.conv.0.0.weight",
        "Box_Head.convs.7.weight": "roi_heads.box_head.convs.2.1.weight",
        "Box_Head.conv1_head.3.0.weight": "roi_heads.box_head.first.3.0.weight",
        "Mask_Head.conv_fcn.4.bias": "roi_heads.mask_head.convs.1.1.bias",
        "Mask_Head.mask_fc.0.weight": "roi_heads.mask_head.fc.weight",
        "Mask_Head.upconv.weight": "roi_heads.mask_predictor.conv5_mask.weight",
        "Mask_Outs.classify.bias": "roi_heads.mask_predictor.mask_fcn_logits.bias",
    }  # fmt: skip
    for official, mine in pairs.items():
        assert torch.equal(ours[mine], state[official]), official
    assert torch.equal(ours["backbone.body.layer1.0.bn1.running_var"], torch.ones(64))
    assert torch.equal(ours["backbone.body.layer1.0.downsample.1.running_mean"], torch.zeros(256))


BREAKAGES = {
    "missing": (
        lambda s: s.pop("Mask_Head.mask_conv4_fc.1.bias"),
        r"missing keys.*mask_head.fc_conv4.1.bias",
    ),
    "unknown": (
        lambda s: s.update({"Mask_Head.mask_conv6.weight": torch.zeros(1)}),
        r"unknown keys.*Mask_Head.mask_conv6",
    ),
    "mis-shaped": (
        lambda s: s.update({"Box_Outs.cls_score.bias": torch.zeros(91)}),
        r"box_predictor.cls_score.bias: file \(91,\)",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_checkpoint_that_does_not_fit_names_the_key(breakage: str) -> None:
    change, message = BREAKAGES[breakage]
    state = official_state()
    change(state)
    with pytest.raises(WeightsError, match=message):
        segcore.build("panet_r50_fpn", weights=state)
