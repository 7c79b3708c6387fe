"""label_offset: how far a model's labels sit from 0-based class indices."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import segcore
from segcore.labels import BACKGROUND, label_offset


@pytest.mark.parametrize(
    ("class_names", "offset"),
    [
        ([BACKGROUND, "person", "car"], 1),
        (["person", "car"], 0),
        (["person", BACKGROUND], 0),  # only a leading background label shifts the classes
        ([], 0),
        (None, 0),
    ],
)
def test_offset_from_class_names(class_names: list[str] | None, offset: int) -> None:
    assert label_offset(SimpleNamespace(class_names=class_names)) == offset


def test_model_without_class_names() -> None:
    assert label_offset(object()) == 0


def test_registered_architectures() -> None:
    # torchvision's Mask R-CNN counts the background as label 0; the demo YOLACT does not.
    assert label_offset(segcore.build("maskrcnn_r50_fpn", num_classes=3)) == 1
    assert label_offset(segcore.build("yolact_r18_demo")) == 0
