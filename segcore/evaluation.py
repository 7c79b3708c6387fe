"""COCO mask and box AP of a model on a dataset, with pycocotools, and its images/s."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from segcore.data.coco import annotation
from segcore.images import to_float_chw
from segcore.labels import label_offset
from segcore.ops import masks_to_rle


@dataclass(frozen=True)
class EvalResult:
    mask_ap: float  # COCO AP, IoU .50:.95
    mask_ap50: float
    box_ap: float
    per_class_mask_ap: dict[str, float]
    images: int
    images_per_second: float

    def table(self) -> str:
        lines = [
            f"mask AP {self.mask_ap:.3f}  AP50 {self.mask_ap50:.3f}  box AP {self.box_ap:.3f}  "
            f"on {self.images} images, {self.images_per_second:.2f} images/s",
            f"{'class':<16} mask AP",
        ]
        lines += [f"{name:<16} {ap:.3f}" for name, ap in self.per_class_mask_ap.items()]
        return "\n".join(lines)


def evaluate(
    model: nn.Module,
    samples: Iterable[tuple[np.ndarray, dict[str, np.ndarray]]],
    class_names: list[str],
    *,
    batch_size: int = 4,
) -> EvalResult:
    """Run ``model`` (eval mode) over ``(frame, target)`` samples (frames (H, W, 3) uint8,
    targets with 0-based ``labels`` and ``masks`` (N, H, W)) and score it with COCOeval."""
    model.eval()
    device = next(model.parameters()).device
    offset = label_offset(model)
    results: list[dict[str, Any]] = []
    elapsed = 0.0
    batch: list[tuple[int, np.ndarray]] = []

    def run(batch: list[tuple[int, np.ndarray]]) -> None:
        nonlocal elapsed
        tensors = [to_float_chw(f, device) for _, f in batch]
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = model(tensors)
        elapsed += time.perf_counter() - start
        for (image_id, _), out in zip(batch, outputs, strict=True):
            if out["masks"].shape[0] == 0:
                continue
            binary = out["masks"][:, 0] > 0.5
            rles = masks_to_rle(binary.cpu())
            mask_scores = out.get("mask_scores", out["scores"])
            boxes = out["boxes"].cpu().tolist()
            for k, rle in enumerate(rles):
                category = int(out["labels"][k]) - offset + 1
                x1, y1, x2, y2 = boxes[k]
                common = {"image_id": image_id, "category_id": category}
                results.append(
                    {
                        **common,
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},  # type: ignore[attr-defined]
                        "score": float(mask_scores[k]),
                    }
                )
                results.append(
                    {**common, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(out["scores"][k])}
                )

    sizes: list[tuple[int, int]] = []
    targets: list[dict[str, np.ndarray]] = []
    for image_id, (frame, target) in enumerate(samples, start=1):
        sizes.append((frame.shape[0], frame.shape[1]))
        targets.append(target)
        batch.append((image_id, frame))
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if not sizes:
        raise ValueError("evaluate: the dataset has no images")
    mask_ap, ap50, box_ap, per_class = _score(sizes, targets, results, class_names)
    count = len(sizes)
    return EvalResult(
        mask_ap=mask_ap,
        mask_ap50=ap50,
        box_ap=box_ap,
        per_class_mask_ap=per_class,
        images=count,
        images_per_second=count / elapsed if elapsed else 0.0,
    )


@dataclass(frozen=True)
class Detection:
    """One detected instance as a service reports it: 0-based class, score, COCO RLE mask
    at the image's size, box xyxy."""

    class_index: int
    score: float
    rle: dict[str, Any]
    box: tuple[float, float, float, float]


def evaluate_detections(
    targets: Sequence[tuple[tuple[int, int], dict[str, np.ndarray]]],
    detections: Sequence[Sequence[Detection]],
    class_names: list[str],
) -> EvalResult:
    """COCO AP of detections made elsewhere (e.g. mask events out of the pipeline) against
    ``(image size (H, W), target)`` pairs, one list of detections per image."""
    if len(targets) != len(detections):
        raise ValueError(f"{len(targets)} images but {len(detections)} detection lists")
    if not targets:
        raise ValueError("evaluate_detections: no images")
    results: list[dict[str, Any]] = []
    for image_id, found in enumerate(detections, start=1):
        for det in found:
            counts = det.rle["counts"]
            x1, y1, x2, y2 = det.box
            common = {"image_id": image_id, "category_id": det.class_index + 1}
            results.append(
                {
                    **common,
                    "segmentation": {
                        "size": list(det.rle["size"]),
                        "counts": counts.decode() if isinstance(counts, bytes) else counts,
                    },
                    "score": det.score,
                }
            )
            results.append({**common, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": det.score})
    mask_ap, ap50, box_ap, per_class = _score(
        [size for size, _ in targets], [t for _, t in targets], results, class_names
    )
    return EvalResult(mask_ap, ap50, box_ap, per_class, len(targets), 0.0)


def _score(
    sizes: list[tuple[int, int]],
    targets: list[dict[str, np.ndarray]],
    results: list[dict[str, Any]],
    class_names: list[str],
) -> tuple[float, float, float, dict[str, float]]:
    """(mask AP, mask AP50, box AP, per-class mask AP) of COCO-format results."""
    images, annotations = [], []
    ann_id = 1
    for image_id, ((height, width), target) in enumerate(zip(sizes, targets, strict=True), 1):
        images.append({"id": image_id, "height": height, "width": width})
        for label, mask in zip(target["labels"], target["masks"], strict=True):
            annotations.append(annotation(ann_id, image_id, int(label), mask))
            ann_id += 1
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    stats = {}
    per_class: dict[str, float] = {}
    for kind in ("segm", "bbox"):
        subset = [r for r in results if (kind == "segm") == ("segmentation" in r)]
        if not subset:
            stats[kind] = (0.0, 0.0)
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(subset)
            ev = COCOeval(gt, dt, kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats[kind] = (float(ev.stats[0]), float(ev.stats[1]))
        if kind == "segm":
            precision = ev.eval["precision"]  # (T, R, K, A, M)
            for k, name in enumerate(class_names):
                p = precision[:, :, k, 0, -1]
                per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return (
        max(stats["segm"][0], 0.0),
        max(stats["segm"][1], 0.0),
        max(stats["bbox"][0], 0.0),
        per_class or {n: 0.0 for n in class_names},
    )
