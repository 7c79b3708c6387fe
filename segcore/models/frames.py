"""The serving entry every architecture answers: uint8 frames in, detections out, masks in
the compact form.

Frames: (B, H, W, 3) uint8 RGB (channels last, as decoders produce them), or a sequence of
(H, W, 3) when their sizes differ, on the model's device. Each architecture that resizes its
input does it once, with the normalisation, in ``preprocess_frames`` on that device (Mask
R-CNN: ``FusedTransform.batch_frames``, torchvision's geometry; YOLACT: its fixed square).

Outputs, one dict per frame, at the frame's own size: ``boxes`` (N, 4) float xyxy in frame
pixels, ``scores`` (N,), ``labels`` (N,) int64 (and YOLACT++'s ``mask_scores``), and masks
as ``mask_format`` says:

- ``"full"``: ``masks`` (N, 1, H, W) float probabilities at the frame's size (what
  ``model(images)`` returns; evaluation and training keep that path).
- ``"compact"``: ``masks`` (N, 1, M, M) float probabilities at the model's own resolution
  and ``mask_boxes`` (N, 4) float, the pixel edges (x1, y1, x2, y2), exclusive ends, of the
  frame region the M x M grid spans. Mask R-CNN: the 28x28 head masks with the one-cell
  zero border torchvision pastes them with, spanning torchvision's integer paste box.
  YOLACT: a square window of the cropped prototype-resolution mask (the crop plus one zero
  cell, inside the prototype plane), spanning its share of the frame. Both are pasted the
  same way at any frame size (``services.segment.infer.paste_compact``): ``mask_boxes``
  scaled to that size and rounded to whole pixels, then ``paste_masks(padding=0,
  threshold=0.5)``. At the frame's own size that is the full plane's mask, pixel for pixel
  for Mask R-CNN and up to rounding at the window's edges for YOLACT (half a pixel).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

MASK_FORMATS = ("full", "compact")


def check_mask_format(mask_format: str) -> None:
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")


def infer_frames(
    model: nn.Module, frames: Tensor | Sequence[Tensor], mask_format: str = "compact"
) -> list[dict[str, Tensor]]:
    """``model``'s detections for uint8 ``frames`` (see the module docstring), in inference
    mode. A model answers through its own ``infer_frames(frames, mask_format)`` method
    (YOLACT) or, for torchvision's detection models finished with ``FusedTransform`` (Mask
    R-CNN and the models built on its parts), through ``maskrcnn.infer_frames``."""
    import torch

    from segcore.models import maskrcnn

    check_mask_format(mask_format)
    if isinstance(frames, Tensor):
        if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(
                f"infer_frames: frames must be (B, H, W, 3) uint8, got "
                f"{tuple(frames.shape)} {frames.dtype}"
            )
    else:
        for frame in frames:
            if frame.dim() != 3 or frame.shape[-1] != 3 or frame.dtype != torch.uint8:
                raise ValueError(
                    f"infer_frames: each frame must be (H, W, 3) uint8, got "
                    f"{tuple(frame.shape)} {frame.dtype}"
                )
    own = getattr(model, "infer_frames", None)
    with torch.inference_mode():
        if callable(own):
            return list(own(frames, mask_format=mask_format))
        if isinstance(getattr(model, "transform", None), maskrcnn.FusedTransform):
            return maskrcnn.infer_frames(model, frames, mask_format)
    raise TypeError(
        f"infer_frames: {type(model).__name__} takes no uint8 frames (give it an "
        "infer_frames(frames, mask_format) method, or finish a torchvision detection model "
        "with segcore.models.maskrcnn's FusedTransform)"
    )
