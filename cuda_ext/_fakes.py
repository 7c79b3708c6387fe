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

    _registered = True
