"""COCO mask and box AP of a model on a dataset, with pycocotools, and its images/s."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from segcore.data.coco import annotation
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


def _label_to_class(model: nn.Module) -> int:
    """How far a model's labels sit from 0-based class indices (1 with a background)."""
    names = getattr(model, "class_names", None) or []
    return 1 if names and names[0] == "__background__" else 0


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
    offset = _label_to_class(model)
    images, annotations, results = [], [], []
    elapsed = 0.0
    batch: list[tuple[int, np.ndarray]] = []

    def run(batch: list[tuple[int, np.ndarray]]) -> None:
        nonlocal elapsed
        tensors = [
            torch.from_numpy(f).permute(2, 0, 1).float().div(255).to(device) for _, f in batch
        ]
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

    ann_id = 1
    for image_id, (frame, target) in enumerate(samples, start=1):
        height, width = frame.shape[:2]
        images.append({"id": image_id, "height": height, "width": width})
        for label, mask in zip(target["labels"], target["masks"], strict=True):
            annotations.append(annotation(ann_id, image_id, int(label), mask))
            ann_id += 1
        batch.append((image_id, frame))
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if not images:
        raise ValueError("evaluate: the dataset has no images")

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
    count = len(images)
    return EvalResult(
        mask_ap=max(stats["segm"][0], 0.0),
        mask_ap50=max(stats["segm"][1], 0.0),
        box_ap=max(stats["bbox"][0], 0.0),
        per_class_mask_ap=per_class or {n: 0.0 for n in class_names},
        images=count,
        images_per_second=count / elapsed if elapsed else 0.0,
    )
