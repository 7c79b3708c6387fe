"""The two-stage demo models: built alike but for PANet's parts, shipped as float16 weights
that load with no argument, and panet_r18_demo segments scenes training never drew."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import segcore
from segcore.data import synthetic
from segcore.evaluation import evaluate
from segcore.models import rcnn_demo
from segcore.models.weights import WeightsError
from segcore.training import synthetic_samples

DEMOS = ["maskrcnn_r18_demo", "panet_r18_demo"]


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_the_demos_differ_only_in_panets_parts() -> None:
    mask_rcnn, panet = (segcore.build(n, pretrained=False) for n in DEMOS)
    assert _shapes(mask_rcnn.backbone.body) == _shapes(panet.backbone.body)
    assert _shapes(mask_rcnn.backbone.fpn) == _shapes(panet.backbone.fpn)
    assert _shapes(mask_rcnn.rpn) == _shapes(panet.rpn)
    assert _shapes(mask_rcnn.roi_heads.box_predictor) == _shapes(panet.roi_heads.box_predictor)
    assert mask_rcnn.backbone.bottom_up is None and panet.backbone.bottom_up is not None
    for a, b in [(mask_rcnn.transform, panet.transform), (mask_rcnn.roi_heads, panet.roi_heads)]:
        settings = ("min_size", "max_size", "score_thresh", "nms_thresh", "detections_per_img")
        assert [getattr(a, s, None) for s in settings] == [getattr(b, s, None) for s in settings]
    assert mask_rcnn.class_names == panet.class_names == rcnn_demo.CLASS_NAMES
    assert segcore.registry.input_side(DEMOS[0]) == segcore.registry.input_side(DEMOS[1]) == 240


@pytest.mark.parametrize("name", DEMOS)
def test_weights_ship_as_float16_and_load_by_default(name: str) -> None:
    path = rcnn_demo.demo_weights(name)
    assert path.is_file()
    assert path.stat().st_size < 30 * 1024 * 1024
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    model = segcore.build(name)
    key = "roi_heads.box_predictor.cls_score.weight"
    torch.testing.assert_close(model.state_dict()[key], state[key].float())


def test_missing_weights_say_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(rcnn_demo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsError, match=r"segstream train configs/panet_r18_demo\.toml"):
        segcore.build("panet_r18_demo")
    segcore.build("panet_r18_demo", pretrained=False)  # for training


def test_other_class_counts_are_refused() -> None:
    with pytest.raises(TypeError, match="has 6 classes"):
        segcore.build("panet_r18_demo", pretrained=False, num_classes=91)
    with pytest.raises(TypeError, match="unknown settings nms"):
        segcore.build("maskrcnn_r18_demo", pretrained=False, nms=0.3)


def test_fused_and_channels_last_builds_give_the_same_detections(compiled_ops: None) -> None:
    frames = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f, _ in
              synthetic_samples("val", 2, (240, 320))]  # fmt: skip
    plain = segcore.build("panet_r18_demo")
    fast = segcore.build("panet_r18_demo", fuse=True, channels_last=True)
    with torch.inference_mode():
        for a, b in zip(plain(frames), fast(frames), strict=True):
            assert a["boxes"].shape[0] > 0
            assert torch.equal(a["labels"], b["labels"])
            torch.testing.assert_close(a["boxes"], b["boxes"], atol=0.05, rtol=0)
            torch.testing.assert_close(a["scores"], b["scores"], atol=1e-3, rtol=0)


def test_panet_mask_ap_on_unseen_scenes(compiled_ops: None) -> None:
    model = segcore.build("panet_r18_demo")
    # Validation seeds lie outside the range training draws from.
    samples = synthetic_samples("val", 100, (240, 320))
    result = evaluate(model, samples, list(synthetic.CLASSES))
    assert result.mask_ap >= 0.60, result.table()
    assert all(ap > 0.3 for ap in result.per_class_mask_ap.values()), result.table()
