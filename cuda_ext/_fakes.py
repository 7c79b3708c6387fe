"""Shape functions of the compiled ops, so torch.compile and export can trace them."""

from __future__ import annotations

import torch

_registered = False


def register() -> None:
    global _registered
    if _registered:
        return

    @torch.library.register_fake("cuda_ext::paste_masks")
    def _paste_masks(
        masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, padding: int
    ) -> torch.Tensor:
        torch._check(masks.dim() == 4, lambda: "paste_masks: masks must be (N, 1, M, M)")
        torch._check(boxes.shape[0] == masks.shape[0], lambda: "paste_masks: N mismatch")
        return masks.new_empty((masks.shape[0], 1, height, width))

    _registered = True
