"""COCO-format datasets: round trip through pycocotools, and errors that name the entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segcore.data import synthetic
from segcore.data.coco import CocoDataset, DatasetError, write_coco


def _dataset(tmp_path: Path) -> tuple[Path, list]:
    frames = list(synthetic.frames_of([1, 2], 6, (64, 80), stride=3))
    path = write_coco(frames, tmp_path, synthetic.CLASSES)
    return path, frames


def test_round_trip(tmp_path: Path) -> None:
    path, frames = _dataset(tmp_path)
    dataset = CocoDataset(tmp_path / "images", path)
    assert len(dataset) == len(frames) and dataset.class_names == list(synthetic.CLASSES)
    for i, (frame, target) in enumerate(frames):
        sample = dataset[i]
        assert np.array_equal((sample.image.permute(1, 2, 0) * 255).round().byte().numpy(), frame)
        assert np.array_equal(sample.target["masks"].numpy().astype(bool), target["masks"])
        assert sample.target["labels"].tolist() == target["labels"].tolist()


def test_polygons_and_uncompressed_rle(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    square = np.zeros((20, 30), np.uint8)
    square[5:10, 3:9] = 1
    counts = []
    flat, value, run = square.flatten(order="F"), 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}],
        "categories": [{"id": 3, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [3, 5, 6, 5],
             "segmentation": [[3, 5, 9, 5, 9, 10, 3, 10]]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [3, 5, 6, 5],
             "segmentation": {"size": [20, 30], "counts": counts}},
        ],
    }  # fmt: skip
    (tmp_path / "ann.json").write_text(json.dumps(data))
    sample = CocoDataset(tmp_path / "images", tmp_path / "ann.json")[0]
    masks = sample.target["masks"].numpy()
    assert np.array_equal(masks[1], square)
    assert (
        mask_utils.iou(
            [mask_utils.encode(np.asfortranarray(masks[0]))],
            [mask_utils.encode(np.asfortranarray(square))],
            [0],
        )[0][0]
        > 0.6
    )
    assert sample.target["labels"].tolist() == [0, 0]


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_missing_image_is_named(tmp_path: Path) -> None:
    path, _ = _dataset(tmp_path)
    (tmp_path / "images" / "000002.png").unlink()
    with pytest.raises(
        DatasetError, match=r"images\[1\] \(id 2\): image file .*000002\.png not found"
    ):
        CocoDataset(tmp_path / "images", path)


def test_malformed_annotation_is_named(tmp_path: Path) -> None:
    path, _ = _dataset(tmp_path)
    _edit(path, lambda d: d["annotations"][2].update(segmentation={"size": [1, 1]}))
    with pytest.raises(DatasetError, match=r"annotations\[2\] \(id 3\) is malformed"):
        CocoDataset(tmp_path / "images", path)


def test_unknown_category_is_named(tmp_path: Path) -> None:
    path, _ = _dataset(tmp_path)
    _edit(path, lambda d: d["annotations"][0].update(category_id=99))
    with pytest.raises(DatasetError, match=r"annotations\[0\] \(id 1\) refers to an unknown"):
        CocoDataset(tmp_path / "images", path)


def test_empty_set_and_bad_json(tmp_path: Path) -> None:
    path, _ = _dataset(tmp_path)
    _edit(path, lambda d: d.update(images=[], annotations=[]))
    with pytest.raises(DatasetError, match="has no images"):
        CocoDataset(tmp_path / "images", path)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="not readable as JSON"):
        CocoDataset(tmp_path / "images", path)
    with pytest.raises(DatasetError, match="annotations file not found"):
        CocoDataset(tmp_path / "images", tmp_path / "nope.json")
