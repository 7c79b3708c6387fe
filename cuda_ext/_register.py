"""Python-side registrations of the compiled ops: shape functions (so torch.compile and
export trace them) and autograd formulas (for the ops training differentiates)."""

from __future__ import annotations

from typing import Any

import torch

_registered = False


def register() -> None:
    global _registered
    if _registered:
        return

    @torch.library.register_fake("cuda_ext::paste_masks")
    def _paste_masks(
        masks: torch.Tensor,
        boxes: torch.Tensor,
        height: int,
        width: int,
        padding: int,
        threshold: float | None = None,
    ) -> torch.Tensor:
        torch._check(masks.dim() == 4, lambda: "paste_masks: masks must be (N, 1, M, M)")
        torch._check(boxes.shape[0] == masks.shape[0], lambda: "paste_masks: N mismatch")
        dtype = torch.bool if threshold is not None else masks.dtype
        return masks.new_empty((masks.shape[0], 1, height, width), dtype=dtype)

    @torch.library.register_fake("cuda_ext::rle_transitions")
    def _rle_transitions(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = torch.library.get_ctx()
        total = ctx.new_dynamic_size()
        long = torch.int64
        return (
            masks.new_empty((total,), dtype=long),
            masks.new_empty((masks.shape[0] + 1,), dtype=long),
        )

    @torch.library.register_fake("cuda_ext::rle_strings")
    def _rle_strings(
        positions: torch.Tensor, offsets: torch.Tensor, numel: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = torch.library.get_ctx()
        total = ctx.new_dynamic_size()
        return (
            positions.new_empty((total,), dtype=torch.uint8),
            offsets.new_empty(offsets.shape),
        )

    @torch.library.register_fake("cuda_ext::fast_nms_keep")
    def _fast_nms_keep(
        boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, conf_threshold: float
    ) -> torch.Tensor:
        return scores.new_empty(scores.shape, dtype=torch.bool)

    @torch.library.register_fake("cuda_ext::assemble_masks")
    def _assemble_masks(
        protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor
    ) -> torch.Tensor:
        return protos.new_empty((coeffs.shape[0], protos.shape[2], protos.shape[3]))

    @torch.library.register_fake("cuda_ext::preprocess_frames")
    def _preprocess_frames(
        frames: torch.Tensor, out_h: int, out_w: int, mean: list[float], std: list[float]
    ) -> torch.Tensor:
        return frames.new_empty((frames.shape[0], 3, out_h, out_w), dtype=torch.float32)

    @torch.library.register_fake("cuda_ext::multiscale_roi_align")
    def _multiscale_roi_align(
        features: list[torch.Tensor],
        rois: torch.Tensor,
        levels: torch.Tensor,
        scales: list[float],
        pooled_h: int,
        pooled_w: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> torch.Tensor:
        first = features[0]
        return first.new_empty((rois.shape[0], first.shape[1], pooled_h, pooled_w))

    @torch.library.register_fake("cuda_ext::multiscale_roi_align_backward")
    def _multiscale_roi_align_backward(
        grad: torch.Tensor,
        rois: torch.Tensor,
        levels: torch.Tensor,
        scales: list[float],
        heights: list[int],
        widths: list[int],
        batch: int,
        channels: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> list[torch.Tensor]:
        return [
            grad.new_empty((batch, channels, h, w)) for h, w in zip(heights, widths, strict=True)
        ]

    if hasattr(torch.ops.cuda_ext, "all_levels_roi_align"):  # libraries built before it lack it
        _register_all_levels_roi_align()
    torch.library.register_autograd(
        "cuda_ext::multiscale_roi_align",
        _roi_align_backward,
        setup_context=_roi_align_setup,
    )
    torch.library.register_autograd(
        "cuda_ext::assemble_masks",
        _assemble_masks_backward,
        setup_context=_assemble_masks_setup,
    )
    _registered = True


def _register_all_levels_roi_align() -> None:
    @torch.library.register_fake("cuda_ext::all_levels_roi_align")
    def _all_levels_roi_align(
        features: list[torch.Tensor],
        rois: torch.Tensor,
        scales: list[float],
        pooled_h: int,
        pooled_w: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> torch.Tensor:
        torch._check(
            len(features) == len(scales), lambda: "all_levels_roi_align: one scale per level"
        )
        first = features[0]
        return first.new_empty((len(features), rois.shape[0], first.shape[1], pooled_h, pooled_w))

    @torch.library.register_fake("cuda_ext::all_levels_roi_align_backward")
    def _all_levels_roi_align_backward(
        grad: torch.Tensor,
        rois: torch.Tensor,
        scales: list[float],
        heights: list[int],
        widths: list[int],
        batch: int,
        channels: int,
        sampling_ratio: int,
        aligned: bool,
    ) -> list[torch.Tensor]:
        return [
            grad.new_empty((batch, channels, h, w)) for h, w in zip(heights, widths, strict=True)
        ]

    torch.library.register_autograd(
        "cuda_ext::all_levels_roi_align",
        _all_levels_backward,
        setup_context=_all_levels_setup,
    )


def _all_levels_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    features, rois, scales, _ph, _pw, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.scales = list(scales)
    ctx.shapes = [(f.shape[2], f.shape[3]) for f in features]
    ctx.batch, ctx.channels = features[0].shape[0], features[0].shape[1]
    ctx.sampling_ratio, ctx.aligned = sampling_ratio, aligned


def _all_levels_backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    (rois,) = ctx.saved_tensors
    grads = torch.ops.cuda_ext.all_levels_roi_align_backward(
        grad,
        rois,
        ctx.scales,
        [h for h, _ in ctx.shapes],
        [w for _, w in ctx.shapes],
        ctx.batch,
        ctx.channels,
        ctx.sampling_ratio,
        ctx.aligned,
    )
    return list(grads), None, None, None, None, None, None


def _roi_align_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    features, rois, levels, scales, _ph, _pw, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois, levels)
    ctx.scales = list(scales)
    ctx.shapes = [(f.shape[2], f.shape[3]) for f in features]
    ctx.batch, ctx.channels = features[0].shape[0], features[0].shape[1]
    ctx.sampling_ratio, ctx.aligned = sampling_ratio, aligned


def _roi_align_backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    rois, levels = ctx.saved_tensors
    grads = torch.ops.cuda_ext.multiscale_roi_align_backward(
        grad,
        rois,
        levels,
        ctx.scales,
        [h for h, _ in ctx.shapes],
        [w for _, w in ctx.shapes],
        ctx.batch,
        ctx.channels,
        ctx.sampling_ratio,
        ctx.aligned,
    )
    return list(grads), None, None, None, None, None, None, None


def _assemble_masks_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    protos, coeffs, _boxes, batch_index = inputs
    ctx.save_for_backward(protos, coeffs, batch_index, output)


def _assemble_masks_backward(
    ctx: Any, grad: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
    """Gradients of sigmoid(coeffs @ protos) cropped: zero outside the box, where the output
    is 0 and so is output * (1 - output)."""
    protos, coeffs, batch_index, output = ctx.saved_tensors
    grad_logits = grad * output * (1 - output)
    k, plane = protos.shape[1], protos.shape[2] * protos.shape[3]
    grad_protos = torch.zeros_like(protos) if ctx.needs_input_grad[0] else None
    grad_coeffs = torch.zeros_like(coeffs) if ctx.needs_input_grad[1] else None
    for image in torch.unique(batch_index).tolist():
        rows = torch.nonzero(batch_index == image).squeeze(1)
        g = grad_logits[rows].reshape(rows.numel(), plane)
        flat = protos[image].reshape(k, plane)
        if grad_coeffs is not None:
            grad_coeffs[rows] = g @ flat.t()
        if grad_protos is not None:
            grad_protos[image] = (coeffs[rows].t() @ g).reshape(protos.shape[1:])
    return grad_protos, grad_coeffs, None, None
