"""Training and evaluation end to end on a tiny configuration, and the AP arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import segcore
from segcore.data import synthetic
from segcore.evaluation import Detection, evaluate, evaluate_detections
from segcore.training import TrainConfig, train
from services.cli import main


class Oracle(nn.Module):
    """Returns given instances for each image in turn (a fake model for the AP arithmetic)."""

    def __init__(self, answers: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.answers = answers
        self.weight = nn.Parameter(torch.zeros(1))
        self.class_names = list(synthetic.CLASSES)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self.answers.pop(0) for _ in images]


def _answer(target: dict[str, np.ndarray], keep: slice = slice(None)) -> dict[str, torch.Tensor]:
    masks = torch.from_numpy(target["masks"][keep]).float()[:, None]
    from segcore.data.coco import boxes_of

    return {
        "boxes": torch.from_numpy(boxes_of(target["masks"][keep])),
        "scores": torch.ones(masks.shape[0]),
        "labels": torch.from_numpy(target["labels"][keep]),
        "masks": masks,
    }


def test_perfect_predictions_score_ap_one() -> None:
    samples = [synthetic.frame(s, 3, (96, 128)) for s in range(6)]
    result = evaluate(Oracle([_answer(t) for _, t in samples]), samples, list(synthetic.CLASSES))
    assert result.mask_ap == pytest.approx(1.0) and result.box_ap == pytest.approx(1.0)
    assert result.images == 6 and result.images_per_second > 0
    assert "mask AP 1.000" in result.table()


def test_missing_and_wrong_predictions_lower_ap() -> None:
    samples = [synthetic.frame(s, 3, (96, 128)) for s in range(6)]
    half = evaluate(
        Oracle([_answer(t, slice(0, 1)) for _, t in samples]), samples, list(synthetic.CLASSES)
    )
    assert 0.0 < half.mask_ap < 0.9
    wrong = []
    for _, t in samples:
        answer = _answer(t)
        answer["labels"] = (answer["labels"] + 1) % len(synthetic.CLASSES)
        wrong.append(answer)
    assert evaluate(Oracle(wrong), samples, list(synthetic.CLASSES)).mask_ap < 0.05


def test_detections_from_elsewhere_score_like_the_model_path() -> None:
    from pycocotools import mask as mask_utils

    from segcore.data.coco import boxes_of

    samples = [synthetic.frame(s, 3, (96, 128)) for s in range(4)]
    targets = [((96, 128), t) for _, t in samples]
    perfect = [
        [
            Detection(int(label), 0.9, mask_utils.encode(np.asfortranarray(m)), tuple(box))
            for label, m, box in zip(t["labels"], t["masks"], boxes_of(t["masks"]), strict=True)
        ]
        for _, t in samples
    ]
    result = evaluate_detections(targets, perfect, list(synthetic.CLASSES))
    assert result.mask_ap == pytest.approx(1.0) and result.box_ap == pytest.approx(1.0)
    half = evaluate_detections(targets, [d[:1] for d in perfect], list(synthetic.CLASSES))
    expected = evaluate(
        Oracle([_answer(t, slice(0, 1)) for _, t in samples]), samples, list(synthetic.CLASSES)
    )
    assert half.mask_ap == pytest.approx(expected.mask_ap)
    with pytest.raises(ValueError, match="4 images but 3"):
        evaluate_detections(targets, perfect[:3], list(synthetic.CLASSES))


def _tiny(tmp_path: Path, iterations: int) -> TrainConfig:
    return TrainConfig(
        model="yolact_r18_demo",
        output=str(tmp_path / "run"),
        model_overrides={"pretrained": False, "max_size": 160},
        iterations=iterations,
        batch_size=2,
        warmup=1,
        eval_every=iterations,
        eval_images=4,
        checkpoint_every=1,
        image_size=[96, 128],
        export=str(tmp_path / "weights.pt"),
    )


def test_train_resume_export_and_eval(tmp_path: Path, compiled_ops: None, capsys) -> None:
    result = train(_tiny(tmp_path, 2), quiet=True)
    assert result is not None and result.images == 4
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["step"] == 2
    # Resuming runs only the remaining steps.
    train(_tiny(tmp_path, 3), quiet=True)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["step"] == 3
    exported = torch.load(tmp_path / "weights.pt")
    assert all(v.dtype == torch.float16 for v in exported.values() if v.is_floating_point())
    model = segcore.build(
        "yolact_r18_demo", pretrained=False, max_size=160, weights=tmp_path / "weights.pt"
    )
    assert isinstance(model, nn.Module)


def test_config_errors_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "yolact_r18_demo"\noutput = "x"\nlearning_rate = 1\n')
    with pytest.raises(ValueError, match="unknown settings learning_rate"):
        TrainConfig.from_file(bad)
    assert main(["train", str(bad)]) == 2


def test_eval_cli_on_a_coco_folder(tmp_path: Path, compiled_ops: None, capsys) -> None:
    from segcore.data.coco import write_coco

    path = write_coco(synthetic.frames_of([4], 2, (96, 128)), tmp_path / "ds", synthetic.CLASSES)
    model = segcore.build("yolact_r18_demo", pretrained=False, max_size=160)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    code = main(
        [
            "eval",
            "--model",
            "yolact_r18_demo",
            "--weights",
            str(tmp_path / "w.pt"),
            "--data",
            f"coco:{tmp_path / 'ds' / 'images'}:{path}",
            "--images",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "mask AP" in out and "images/s" in out and "triangle" in out
