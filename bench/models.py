"""Models' throughput, each against a baseline measured in the same run.

    .venv/bin/python bench/models.py [--device cpu|cuda] [--repeat 3]

- ``maskrcnn_r50_fpn`` (built with ``fuse=True, channels_last=True``) against torchvision's
  ``maskrcnn_resnet50_fpn`` with the same weights and inputs (goal: 1.5x on CPU), after
  checking that they give the same detections.
- Every registered model's images/s at its default input size (batch 1).

On CUDA: images/s at batch 1 and 8 in float16 against the float32 eager run.
Exits 1 when a goal or the output check fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

import segcore

# A VGA camera frame; torchvision's transform resizes it to 800 x 1067.
FRAME = (3, 480, 640)


def _seconds(fn: Callable[[], object], repeat: int, device: str) -> float:
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(repeat):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _same_detections(ours: dict, theirs: dict) -> str | None:
    """None when every confident detection of one has a twin in the other: same label, box
    within 1 px, score within 1e-3 (near-equal scores may swap places in the order)."""
    keep_o, keep_t = ours["scores"] > 0.3, theirs["scores"] > 0.3
    if int(keep_o.sum()) != int(keep_t.sum()):
        return f"{int(keep_o.sum())} confident detections vs {int(keep_t.sum())}"
    boxes_t, labels_t, scores_t = (theirs[k][keep_t] for k in ("boxes", "labels", "scores"))
    for box, label, score in zip(
        ours["boxes"][keep_o], ours["labels"][keep_o], ours["scores"][keep_o], strict=True
    ):
        close = (
            (labels_t == label)
            & ((boxes_t - box).abs().amax(dim=1) <= 1.0)
            & ((scores_t - score).abs() <= 1e-3)
        )
        if not close.any():
            return f"no twin for a {int(label)} at {[round(v, 1) for v in box.tolist()]}"
    return None


def maskrcnn_against_torchvision(device: str, repeat: int) -> bool:
    torch.manual_seed(0)
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval().to(device)
    with torch.no_grad():  # confident, varied detections, as trained weights give
        reference.roi_heads.box_predictor.cls_score.bias.normal_(0, 2)
    model = segcore.build(
        "maskrcnn_r50_fpn",
        weights=reference.state_dict(),
        frozen_bn_eps=1e-5,  # torchvision's without its COCO weights
        fuse=True,
        channels_last=True,
        device=device,
    )
    images = [torch.rand(FRAME, generator=torch.Generator().manual_seed(1)).to(device)]
    with torch.inference_mode():
        problem = _same_detections(model(images)[0], reference(images)[0])
    base = _seconds(lambda: reference(images), repeat, device)
    ours = _seconds(lambda: model(images), repeat, device)
    goal = 1.5 if device == "cpu" else 1.0
    ratio = base / ours
    print(
        f"maskrcnn_r50_fpn vs torchvision maskrcnn_resnet50_fpn, {FRAME[1]}x{FRAME[2]} frame: "
        f"torchvision {1 / base:.2f} img/s, segcore {1 / ours:.2f} img/s, speed-up {ratio:.2f}x "
        f"(goal >= {goal}x: {'met' if ratio >= goal else 'MISSED'}); "
        f"outputs: {'same' if problem is None else problem}"
    )
    return ratio >= goal and problem is None


def every_model(device: str, repeat: int) -> None:
    for name in segcore.list_models():
        model = segcore.build(name, fuse=True, channels_last=True, device=device)
        images = [torch.rand(FRAME).to(device)]
        seconds = _seconds(lambda m=model, x=images: m(x), repeat, device)
        print(f"{name}: {1 / seconds:.2f} img/s (batch 1, {FRAME[1]}x{FRAME[2]} frame)")


def half_precision(device: str, repeat: int) -> None:
    for name in segcore.list_models():
        for batch in (1, 8):
            images = [torch.rand(FRAME, device=device) for _ in range(batch)]
            fp32 = segcore.build(name, device=device)
            fast = segcore.build(name, fuse=True, channels_last=True, device=device).half()
            base = _seconds(lambda m=fp32, x=images: m(x), repeat, device)
            half_images = [i.half() for i in images]
            ours = _seconds(lambda m=fast, x=half_images: m(x), repeat, device)
            print(
                f"{name} batch {batch}: float32 eager {batch / base:.1f} img/s, float16 "
                f"channels-last {batch / ours:.1f} img/s, speed-up {base / ours:.2f}x"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    where = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{torch.get_num_threads()} CPU threads"
    )
    print(f"device={args.device} ({where}) torch={torch.__version__}")
    ok = maskrcnn_against_torchvision(args.device, args.repeat)
    every_model(args.device, args.repeat)
    if args.device == "cuda":
        half_precision(args.device, args.repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
