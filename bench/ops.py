"""The compiled ops against their baselines, measured in the same run on the same inputs.

    .venv/bin/python bench/ops.py [--device cpu|cuda] [--repeat 10] [--only NAME-PART]

For each op: the baseline (the library call a user would otherwise make, else the op's
PyTorch reference), the compiled op, the median time of each and the speed-up
(baseline / compiled), with the goal the ops issue sets. Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import MultiScaleRoIAlign, roi_align

import cuda_ext
from segcore.models.maskrcnn import compact_masks
from segcore.ops import (
    all_levels_roi_align,
    assemble_masks,
    assemble_masks_reference,
    fast_nms,
    fast_nms_reference,
    masks_to_rle,
    multiscale_roi_align,
    paste_masks,
    preprocess_frames,
    preprocess_frames_reference,
)
from services.common.events import Instance
from services.segment.infer import instances_of


@dataclass
class Case:
    name: str
    baseline_name: str
    baseline: Callable[[], object]
    ours: Callable[[], object]
    goal: float  # the least acceptable speed-up


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], object], repeat: int, device: str) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _boxes(n: int, height: int, width: int, gen: torch.Generator, scale: float) -> torch.Tensor:
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = (torch.rand(n, 2, generator=gen) * scale * size + 4) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _coco_encode(masks: torch.Tensor) -> list[dict]:
    fortran = np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    return mask_utils.encode(fortran)


def _per_level_roi_align(
    levels: list[torch.Tensor], boxes: list[torch.Tensor], pooled: int
) -> list[torch.Tensor]:
    """PANet's pooling as a user writes it: torchvision's roi_align on each level (strides
    4, 8, 16, 32)."""
    return [
        roi_align(level, boxes, pooled, 1.0 / stride, 2, False)
        for level, stride in zip(levels, (4, 8, 16, 32), strict=True)
    ]


def _full_plane_instances(
    output: dict[str, torch.Tensor], frame_size: tuple[int, int]
) -> tuple[Instance, ...]:
    """The segment worker's mask post-processing before the compact format (the former
    ``services.segment.infer.instances_of``): every (N, 1, h, w) float mask the model
    pasted at its input size resized to the source frame by ``F.interpolate``, thresholded,
    copied to the host and RLE-encoded; boxes scaled."""
    masks, boxes = output["masks"], output["boxes"].float()
    in_h, in_w = masks.shape[-2:]
    width, height = frame_size
    masks = torch.nn.functional.interpolate(masks, size=(height, width), mode="bilinear")
    boxes = boxes * boxes.new_tensor([width / in_w, height / in_h] * 2)
    rles = masks_to_rle((masks[:, 0] > 0.5).cpu())
    return tuple(
        Instance(
            label=str(label),
            class_id=int(label),
            score=float(score),
            box=(box[0], box[1], box[2], box[3]),
            mask_size=(height, width),
            mask_counts=bytes(rle["counts"]).decode("ascii"),  # type: ignore[call-overload]
        )
        for label, score, box, rle in zip(
            output["labels"].tolist(), output["scores"].tolist(), boxes.tolist(), rles, strict=True
        )
    )


def _mask_postprocessing(device: str, gen: torch.Generator) -> list[Case]:
    """One frame's mask post-processing in the segment worker: 15 instances of a Mask R-CNN
    (28x28 head masks in boxes of a 960x540 model input) to events of the 1920x1080 source
    frame; the full-plane path against the compact one (``paste_masks(threshold=)`` at the
    frame's size, ``masks_to_rle`` on the device). The masks are smooth blobs, as a trained
    head's are."""
    n, size, frame = 15, (540, 960), (1920, 1080)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    radius = 0.5 + 0.4 * torch.rand(n, 1, 1, generator=gen)
    head = torch.sigmoid(8 * (radius - (xs**2 + ys**2).sqrt()))[:, None].to(device)
    detections = {
        "boxes": _boxes(n, *size, gen, 0.3).to(device),
        "scores": torch.linspace(1.0, 0.5, n, device=device),
        "labels": torch.ones(n, dtype=torch.int64, device=device),
    }
    full = {**detections, "masks": paste_masks(head, detections["boxes"], size)}
    compact = {**detections, **compact_masks(head, detections["boxes"])}
    return [
        Case(
            "mask post-processing 15 instances, 960x540 model -> 1080p events",
            "full planes: F.interpolate, > 0.5, masks_to_rle",
            partial(_full_plane_instances, full, frame),
            partial(instances_of, compact, [], 0.0, size, frame),
            3.0 if device == "cpu" else 1.0,
        )
    ]


def cases(device: str) -> list[Case]:
    gen = torch.Generator().manual_seed(0)
    out: list[Case] = []

    # 100 instance masks of a Mask R-CNN head pasted into a 1080p frame.
    n, height, width = 100, 1080, 1920
    masks = torch.rand(n, 1, 28, 28, generator=gen).to(device)
    boxes = _boxes(n, height, width, gen, 0.3).to(device)
    out.append(
        Case(
            "paste_masks 100x28x28 -> 1080p",
            "torchvision paste_masks_in_image",
            lambda: paste_masks_in_image(masks, boxes, (height, width)),
            lambda: paste_masks(masks, boxes, (height, width)),
            1.0,
        )
    )
    out.append(
        Case(
            "paste_masks + masks_to_rle 100 -> 1080p",
            "torchvision paste + pycocotools encode",
            lambda: _coco_encode(paste_masks_in_image(masks, boxes, (height, width))[:, 0] > 0.5),
            lambda: masks_to_rle(paste_masks(masks, boxes, (height, width), threshold=0.5)[:, 0]),
            5.0 if device == "cpu" else 1.0,
        )
    )
    # The 1080p serving paste (services.segment.infer.paste_compact): 15 masks from boxes of
    # 100 to 300 px, bool at the frame's size (own generator: later cases' inputs unchanged).
    frame_gen = torch.Generator().manual_seed(1)
    few = torch.rand(15, 1, 28, 28, generator=frame_gen).to(device)
    span = torch.tensor([width - 300, height - 300])
    centre = 150 + torch.rand(15, 2, generator=frame_gen) * span
    half = (100 + torch.rand(15, 2, generator=frame_gen) * 200) / 2
    few_boxes = torch.cat([centre - half, centre + half], dim=1).to(device)
    out.append(
        Case(
            "paste_masks threshold 15x28x28, 100-300 px boxes -> 1080p",
            "torchvision paste_masks_in_image > 0.5",
            lambda: paste_masks_in_image(few, few_boxes, (height, width)) > 0.5,
            lambda: paste_masks(few, few_boxes, (height, width), threshold=0.5),
            1.0,
        )
    )
    binary = paste_masks(masks, boxes, (height, width), threshold=0.5)[:, 0]
    out.append(
        Case(
            "masks_to_rle 100x1080p",
            "pycocotools encode",
            lambda: _coco_encode(binary),
            lambda: masks_to_rle(binary),
            1.0,
        )
    )

    # Mask R-CNN's box head: 2 images, 512 proposals each, 256-channel FPN at 800x1216.
    image_shapes = [(800, 1216), (800, 1216)]
    features = [
        torch.randn(2, 256, 800 // s, 1216 // s, generator=gen).to(device) for s in (4, 8, 16, 32)
    ]
    proposals = [_boxes(512, 800, 1216, gen, 0.4).to(device) for _ in range(2)]
    names = [str(i) for i in range(4)]
    pooler = MultiScaleRoIAlign(names, 7, 2)
    feature_dict = OrderedDict(zip(names, features, strict=True))
    out.append(
        Case(
            "multiscale_roi_align 2x512 boxes, 4 levels",
            "torchvision MultiScaleRoIAlign",
            lambda: pooler(feature_dict, proposals, image_shapes),
            lambda: multiscale_roi_align(features, proposals, image_shapes, 7, 2),
            1.5 if device == "cpu" else 1.0,
        )
    )

    # PANet's adaptive feature pooling: every RoI from every level, against the per-level
    # loop a user would write (one torchvision roi_align per level). panet_r50_fpn's sizes
    # (one 800x1088 image, 256 channels: 512 box RoIs at 7x7, 100 mask RoIs at 14x14) and
    # panet_r18_demo's (one 240x320 frame, 64 channels: 200 proposals, 50 detections).
    for label, size, channels, box_rois, mask_rois in (
        ("800x1088", (800, 1088), 256, 512, 100),
        ("demo 240x320", (240, 320), 64, 200, 50),
    ):
        levels = [
            torch.randn(1, channels, size[0] // s, size[1] // s, generator=gen).to(device)
            for s in (4, 8, 16, 32)
        ]
        for rois, pooled in ((box_rois, 7), (mask_rois, 14)):
            roi_boxes = [_boxes(rois, *size, gen, 0.4).to(device)]
            out.append(
                Case(
                    f"all_levels_roi_align {label} C{channels}, {rois} RoIs {pooled}x{pooled}",
                    "per-level torchvision roi_align",
                    partial(_per_level_roi_align, levels, roi_boxes, pooled),
                    partial(all_levels_roi_align, levels, roi_boxes, [size], pooled, 2),
                    2.0 if device == "cpu" else 1.0,
                )
            )

    # YOLACT's detection: 80 classes over 2000 candidates, top 200 per class.
    det_boxes = _boxes(2000, 550, 550, gen, 0.3).to(device)
    det_scores = torch.rand(80, 2000, generator=gen).to(device)
    out.append(
        Case(
            "fast_nms 80 classes x 2000 boxes",
            "PyTorch reference (YOLACT's fast_nms)",
            lambda: fast_nms_reference(det_boxes, det_scores, 0.5, 200, 0.05, 100),
            lambda: fast_nms(det_boxes, det_scores, 0.5, 200, 0.05, 100),
            1.0,
        )
    )

    # YOLACT's masks: 100 instances from 32 prototypes of 138x138.
    protos = torch.randn(1, 32, 138, 138, generator=gen).to(device)
    coeffs = torch.randn(100, 32, generator=gen).to(device)
    proto_boxes = _boxes(100, 138, 138, gen, 0.3).to(device)
    index = torch.zeros(100, dtype=torch.int64, device=device)
    out.append(
        Case(
            "assemble_masks 100 x 32x138x138",
            "PyTorch reference (matmul, sigmoid, crop)",
            lambda: assemble_masks_reference(protos, coeffs, proto_boxes, index),
            lambda: assemble_masks(protos, coeffs, proto_boxes, index),
            1.0,
        )
    )

    # Four decoded 1080p frames to a 550x550 model input.
    frames = torch.randint(0, 256, (4, 1080, 1920, 3), dtype=torch.uint8, generator=gen)
    frames = frames.to(device)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    out.append(
        Case(
            "preprocess_frames 4x1080p -> 550",
            "F.interpolate + normalise",
            lambda: preprocess_frames_reference(frames, (550, 550), mean, std),
            lambda: preprocess_frames(frames, (550, 550), mean, std),
            1.0,
        )
    )
    out.extend(_mask_postprocessing(device, gen))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args()
    if not cuda_ext.available():
        raise SystemExit(f"compiled ops not loaded: {cuda_ext.load_error()}")
    if args.device == "cuda" and not (torch.cuda.is_available() and cuda_ext.has_cuda_kernels()):
        raise SystemExit("--device cuda needs a CUDA device and a library built with nvcc")
    if args.device == "cuda":
        where = torch.cuda.get_device_name()
    else:
        where = f"{torch.get_num_threads()} CPU threads"
    print(f"device={args.device} ({where}) torch={torch.__version__} repeat={args.repeat}")
    header = ("op", "baseline", "baseline ms", "compiled ms", "speed-up", "goal")
    rows = []
    missed = []
    for case in [c for c in cases(args.device) if args.only in c.name]:
        base = _median_ms(case.baseline, args.repeat, args.device)
        ours = _median_ms(case.ours, args.repeat, args.device)
        ratio = base / ours
        ok = ratio >= case.goal
        if not ok:
            missed.append(case.name)
        verdict = f">={case.goal:g}x {'met' if ok else 'MISSED'}"
        rows.append(
            (case.name, case.baseline_name, f"{base:.2f}", f"{ours:.2f}", f"{ratio:.1f}x", verdict)
        )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if missed:
        print("goals missed: " + ", ".join(missed))
        return 1
    print("all goals met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
