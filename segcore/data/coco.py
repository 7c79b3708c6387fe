"""COCO-format instance segmentation data: reading users' datasets, writing synthetic ones.

A dataset is a folder of images plus an ``instances.json`` in COCO's format (``images``,
``annotations`` with ``segmentation`` as polygons, RLE or compressed RLE, ``categories``).
Anything wrong with one stops the load with a :class:`DatasetError` naming the file and the
entry: a missing image, a malformed annotation, an empty set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch import Tensor

from segcore.images import to_float_chw


class DatasetError(ValueError):
    """A dataset that cannot be used, with the file and the entry at fault."""


@dataclass(frozen=True)
class Sample:
    image: Tensor  # (3, H, W) float RGB in 0..1
    target: dict[str, Tensor]  # boxes (N, 4) xyxy, labels (N,) int64, masks (N, H, W) uint8
    image_id: int


def _decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    if isinstance(segmentation, list):  # polygons
        if not segmentation or not all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in segmentation
        ):
            raise ValueError("polygons must be lists of at least 3 (x, y) points")
        rles = mask_utils.frPyObjects(segmentation, height, width)
        return np.asarray(mask_utils.decode(mask_utils.merge(rles)), dtype=np.uint8)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(
                f"RLE size {segmentation['size']} is not the image's {[height, width]}"
            )
        rle = segmentation
        if isinstance(rle["counts"], list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(rle["counts"], str):
            rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        return np.asarray(mask_utils.decode(rle), dtype=np.uint8)
    raise ValueError("segmentation must be polygons or an RLE dict with size and counts")


class CocoDataset:
    """Images and instance masks of a COCO-format dataset.

    ``labels`` are category indices 0..C-1 in the order of ``categories`` sorted by id
    (``class_names`` gives their names). Every annotation is checked when the dataset is
    opened, so a malformed one fails at once, not mid-training.
    """

    def __init__(self, images_dir: str | Path, annotations: str | Path) -> None:
        self.images_dir = Path(images_dir)
        self.annotations_path = Path(annotations)
        where = str(self.annotations_path)
        try:
            data = json.loads(self.annotations_path.read_text())
        except FileNotFoundError:
            raise DatasetError(f"{where}: annotations file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{where}: not readable as JSON: {exc}") from exc
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"{where}: missing the '{key}' list")
        if not data["images"]:
            raise DatasetError(f"{where}: the dataset has no images")
        if not data["categories"]:
            raise DatasetError(f"{where}: the dataset has no categories")
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.class_names = [str(c["name"]) for c in categories]
        label_of = {int(c["id"]): i for i, c in enumerate(categories)}
        self.images: list[dict[str, Any]] = []  # id, file_name, height, width, annotations
        by_id: dict[int, dict[str, Any]] = {}
        for index, image in enumerate(data["images"]):
            try:
                entry: dict[str, Any] = {
                    "id": int(image["id"]),
                    "file_name": str(image["file_name"]),
                    "height": int(image["height"]),
                    "width": int(image["width"]),
                    "annotations": [],
                }
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"{where}: images[{index}] is malformed: {exc!r}") from exc
            if not (self.images_dir / entry["file_name"]).is_file():
                raise DatasetError(
                    f"{where}: images[{index}] (id {entry['id']}): image file "
                    f"{self.images_dir / entry['file_name']} not found"
                )
            self.images.append(entry)
            by_id[entry["id"]] = entry
        for index, ann in enumerate(data["annotations"]):
            label = f"{where}: annotations[{index}] (id {ann.get('id', '?')})"
            try:
                image = by_id[int(ann["image_id"])]
                category = label_of[int(ann["category_id"])]
                x, y, w, h = (float(v) for v in ann["bbox"])
                _decode_segmentation(ann["segmentation"], image["height"], image["width"])
            except KeyError as exc:
                raise DatasetError(f"{label} refers to an unknown or missing {exc}") from exc
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"{label} is malformed: {exc}") from exc
            if w < 0 or h < 0:
                raise DatasetError(f"{label} is malformed: negative bbox size")
            image["annotations"].append(
                {
                    "label": category,
                    "box": (x, y, x + w, y + h),
                    "segmentation": ann["segmentation"],
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        """Image ``index`` as a model takes it (see :func:`segcore.images.to_float_chw`)."""
        rgb, target = self.frame(index)
        tensors = {k: torch.from_numpy(v) for k, v in target.items()}
        return Sample(to_float_chw(rgb), tensors, self.images[index]["id"])

    def frame(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Image ``index`` as frames are decoded, (H, W, 3) uint8 RGB (writable), and its
        target as arrays: boxes (N, 4) float32 xyxy, labels (N,) int64, masks (N, H, W)
        uint8; crowd annotations left out."""
        entry = self.images[index]
        path = self.images_dir / entry["file_name"]
        try:
            with Image.open(path) as img:
                rgb = np.array(img.convert("RGB"))
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read the image: {exc}") from exc
        height, width = entry["height"], entry["width"]
        if rgb.shape[:2] != (height, width):
            raise DatasetError(
                f"{self.annotations_path}: image id {entry['id']} is {rgb.shape[1]}x"
                f"{rgb.shape[0]} but annotated as {width}x{height}"
            )
        anns = [a for a in entry["annotations"] if not a["iscrowd"]]
        masks = (
            np.stack([_decode_segmentation(a["segmentation"], height, width) for a in anns])
            if anns
            else np.zeros((0, height, width), np.uint8)
        )
        target: dict[str, np.ndarray] = {
            "boxes": np.asarray([a["box"] for a in anns], dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray([a["label"] for a in anns], dtype=np.int64),
            "masks": masks,
        }
        return rgb, target


def boxes_of(masks: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy boxes (pixel edges) of (N, H, W) masks."""
    out = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if xs.size:
            out[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return out


def annotation(ann_id: int, image_id: int, label: int, mask: np.ndarray) -> dict[str, Any]:
    """COCO annotation of one instance: class index ``label`` (category ``label + 1``), its
    mask as compressed RLE (counts as text), its box and area."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    x1, y1, x2, y2 = (float(v) for v in boxes_of(mask[None])[0])
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": label + 1,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()},
        "area": float(mask.sum()),
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "iscrowd": 0,
    }


def write_coco(
    frames: Iterable[tuple[np.ndarray, dict[str, np.ndarray]]],
    folder: str | Path,
    class_names: Sequence[str],
    *,
    write_images: bool = True,
    start_id: int = 1,
) -> Path:
    """Write frames and ground truth as a COCO dataset (PNG images, compressed-RLE masks);
    return the path of ``instances.json``."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for offset, (frame, target) in enumerate(frames):
        image_id = start_id + offset
        name = f"{image_id:06d}.png"
        if write_images:
            Image.fromarray(frame).save(folder / "images" / name)
        height, width = frame.shape[:2]
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        for label, mask in zip(target["labels"], target["masks"], strict=True):
            annotations.append(annotation(ann_id, image_id, int(label), mask))
            ann_id += 1
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
    path = folder / "instances.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path
