"""The served build of every architecture against its reference, measured in the same run.

    .venv/bin/python bench/models.py [--device cpu|cuda] [--repeat 5] [--models a,b]

Each model is built as the segment worker builds it (``segcore.build_served``: the
registry's ``Served`` for the device, warm-up included, its time printed) and timed through
the serving entry (``segcore.models.frames.infer_frames``) on one uint8 frame (batch 1) at
the size the service feeds it (ingest shrinks frames to the architecture's ``input_side``;
the 480x640 frame here is what Mask R-CNN resizes to 800x1067 at ``min_size`` 800, YOLACT
to its square). Reference and served model run in alternation, ``--repeat`` pairs after one
untimed pair; the ratio printed is the median of the pairs' ratios (the machine's load
changes less within a pair than across the run).

- ``maskrcnn_r50_fpn`` against torchvision's ``maskrcnn_resnet50_fpn`` with the same
  weights, on the same frame (as floats in 0..1, torchvision's input); both return full
  masks at the frame's size. Goal on CPU: 2x.
- ``yolact_r50`` against this project's default build (``segcore.build``: no folding,
  contiguous weights, nothing compiled) through the same entry, masks in the compact form
  the worker takes. Goal on CPU: 1.8x.
- Every other registered model against its own default build (no goal).
- On CUDA, then: float16 channels-last against the float32 eager run, batch 1 and 8.

Outputs must stay within the tolerance (:func:`same_detections`): every detection scoring
above 0.3 of one has a twin in the other: same label, box within 1 px, score within 1e-3,
mask IoU >= 0.99 (masks thresholded at 0.5; boxes under 8 px on a side are not compared:
segcore's ``paste_masks`` and torchvision's round such slivers to different columns, in
every build). The weights are random (no trained weights
ship here) with class biases drawn so that detections are confident and varied, as trained
weights give. Exits 1 when a goal or an output check fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial

import torch
from torch import Tensor, nn
from torchvision.models.detection import maskrcnn_resnet50_fpn

import segcore
from segcore.models.frames import infer_frames

# A VGA camera frame (height, width); torchvision's transform resizes it to 800 x 1067.
FRAME = (480, 640)
GOALS = {"maskrcnn_r50_fpn": 2.0, "yolact_r50": 1.8}
SCORE = 0.3
# Masks of boxes narrower than this (px) are not compared: segcore's paste_masks and
# torchvision's round a box a few pixels wide to different pixel columns.
MASK_MIN_SIDE = 8.0


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def pairs(
    reference: Callable[[], object], served: Callable[[], object], repeat: int, device: str
) -> tuple[float, float, float]:
    """Median seconds of the reference and the served call, and the median of the
    per-pair ratios (reference / served), over ``repeat`` alternating pairs."""
    times: list[tuple[float, float]] = []
    with torch.inference_mode():
        reference(), served()
        for _ in range(repeat):
            pair = []
            for call in (reference, served):
                _sync(device)
                start = time.perf_counter()
                call()
                _sync(device)
                pair.append(time.perf_counter() - start)
            times.append((pair[0], pair[1]))
    return (
        statistics.median(t[0] for t in times),
        statistics.median(t[1] for t in times),
        statistics.median(t[0] / t[1] for t in times),
    )


def _mask_iou(a: Tensor, b: Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def same_detections(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> str | None:
    """None when every detection above ``SCORE`` of one has a twin in the other: same
    label, box within 1 px, score within 1e-3 (near-equal scores may swap places) and, where
    both carry masks of the same size, mask IoU >= 0.99 (boxes at least ``MASK_MIN_SIDE``
    wide and high); else what differs."""
    keep_o, keep_t = ours["scores"] > SCORE, theirs["scores"] > SCORE
    if int(keep_o.sum()) != int(keep_t.sum()):
        return f"{int(keep_o.sum())} confident detections vs {int(keep_t.sum())}"
    theirs_kept = {k: v[keep_t] for k, v in theirs.items() if k in ("boxes", "labels", "scores")}
    masks_o, masks_t = ours.get("masks"), theirs.get("masks")
    with_masks = masks_o is not None and masks_t is not None
    with_masks = with_masks and masks_o.shape[1:] == masks_t.shape[1:]  # type: ignore[union-attr]
    for index in torch.nonzero(keep_o).flatten().tolist():
        box, label, score = ours["boxes"][index], ours["labels"][index], ours["scores"][index]
        close = (
            (theirs_kept["labels"] == label)
            & ((theirs_kept["boxes"] - box).abs().amax(dim=1) <= 1.0)
            & ((theirs_kept["scores"] - score).abs() <= 1e-3)
        )
        if not close.any():
            return f"no twin for a {int(label)} at {[round(v, 1) for v in box.tolist()]}"
        sides = box[2:] - box[:2]
        if with_masks and float(sides.min()) >= MASK_MIN_SIDE:
            twins = torch.nonzero(keep_t).flatten()[close].tolist()
            best = max(_mask_iou(masks_o[index], masks_t[t]) for t in twins)  # type: ignore[index]
            if best < 0.99:
                return f"mask IoU {best:.3f} for a {int(label)}"
    return None


def _frame(device: str, size: tuple[int, int] = FRAME) -> Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (1, *size, 3), generator=generator, dtype=torch.uint8).to(device)


def _describe(model: nn.Module) -> str:
    config = asdict(segcore.served_build(model))
    config.pop("measured")
    if not config["compile"]:
        for key in ("compile", "compile_mode", "freezing", "warm_sizes"):
            config.pop(key)
    shown = ", ".join(f"{k}={v}" for k, v in config.items() if v is not None)
    return f"served: {shown}; warm-up {getattr(model, 'warm_up_seconds', 0.0):.1f} s"


def _report(name: str, base: float, ours: float, ratio: float, problem: str | None) -> bool:
    goal = GOALS.get(name)
    met = goal is None or ratio >= goal
    verdict = "" if goal is None else f" (goal >= {goal}x: {'met' if met else 'MISSED'})"
    print(
        f"  reference {1 / base:.2f} img/s, served {1 / ours:.2f} img/s, "
        f"speed-up {ratio:.2f}x{verdict}; outputs: {'same' if problem is None else problem}",
        flush=True,
    )
    return met and problem is None


def maskrcnn_against_torchvision(device: str, repeat: int) -> bool:
    torch.manual_seed(0)
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval().to(device)
    with torch.no_grad():  # confident, varied detections, as trained weights give
        reference.roi_heads.box_predictor.cls_score.bias.normal_(0, 2)
    model = segcore.build_served(
        "maskrcnn_r50_fpn",
        weights=reference.state_dict(),
        frozen_bn_eps=1e-5,  # torchvision's without its COCO weights
        device=device,
    )
    frame = _frame(device)
    images = [frame[0].permute(2, 0, 1).float() / 255]
    print(
        f"maskrcnn_r50_fpn vs torchvision maskrcnn_resnet50_fpn, {FRAME[0]}x{FRAME[1]} frame "
        f"at min_size 800; {_describe(model)}",
        flush=True,
    )
    with torch.inference_mode():
        problem = same_detections(infer_frames(model, frame, "full")[0], reference(images)[0])
    base, ours, ratio = pairs(
        lambda: reference(images), lambda: infer_frames(model, frame, "full"), repeat, device
    )
    return _report("maskrcnn_r50_fpn", base, ours, ratio, problem)


def _confident(model: nn.Module) -> None:
    """Class biases that make random weights' detections confident (YOLACT's confidence
    layer; Mask R-CNN's box predictor)."""
    generator = torch.Generator().manual_seed(2)
    for name, module in model.named_modules():
        if name.endswith(("conf_layer", "cls_score")) and getattr(module, "bias", None) is not None:
            bias = module.bias
            with torch.no_grad():
                noise = torch.randn(bias.shape, generator=generator) * 2
                bias.copy_(noise.to(bias.device))


def against_default(name: str, device: str, repeat: int) -> bool:
    """``name`` served against its default build, same (random) weights, same frame."""
    torch.manual_seed(0)
    default = segcore.build(name, device=device)
    _confident(default)
    state = {k: v.cpu() for k, v in default.state_dict().items()}
    model = segcore.build_served(name, weights=state, device=device)
    frame = _frame(device)
    print(f"{name} vs its default build, {FRAME[0]}x{FRAME[1]} frame; {_describe(model)}")
    with torch.inference_mode():
        problem = same_detections(
            infer_frames(model, frame, "full")[0], infer_frames(default, frame, "full")[0]
        )
    base, ours, ratio = pairs(
        lambda: infer_frames(default, frame, "compact"),
        lambda: infer_frames(model, frame, "compact"),
        repeat,
        device,
    )
    return _report(name, base, ours, ratio, problem)


def half_precision(device: str, repeat: int) -> None:
    """On CUDA: float16 channels-last against the float32 eager run, batch 1 and 8."""
    for name in segcore.list_models():
        for batch in (1, 8):
            images = [torch.rand(3, *FRAME, device=device) for _ in range(batch)]
            fp32 = segcore.build(name, device=device)
            fast = segcore.build(name, fuse=True, channels_last=True, device=device).half()
            half_images = [i.half() for i in images]
            base, ours, ratio = pairs(
                partial(fp32, images), partial(fast, half_images), repeat, device
            )
            print(
                f"{name} batch {batch}: float32 eager {batch / base:.1f} img/s, float16 "
                f"channels-last {batch / ours:.1f} img/s, speed-up {ratio:.2f}x"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=5, help="timed pairs per model")
    parser.add_argument("--models", help="comma-separated registered names (default: all)")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else segcore.list_models()
    unknown = sorted(set(names) - set(segcore.list_models()))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {segcore.list_models()}")
    where = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{torch.get_num_threads()} CPU threads"
    )
    print(f"device={args.device} ({where}) torch={torch.__version__}, batch 1", flush=True)
    ok = True
    for name in names:
        if name == "maskrcnn_r50_fpn":
            ok &= maskrcnn_against_torchvision(args.device, args.repeat)
        else:
            ok &= against_default(name, args.device, args.repeat)
    if args.device == "cuda":
        half_precision(args.device, args.repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
