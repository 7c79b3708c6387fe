"""COCO run-length encoding of many masks at once: ``pycocotools.mask.encode`` in one call.

The compiled op finds where runs start (``rle_transitions``: on the device for CUDA masks, so
only the run boundaries leave it) and builds the compressed strings in C++
(``rle_strings``). :func:`masks_to_rle_reference` is the pure-PyTorch/Python twin.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor

import cuda_ext
from segcore.ops import _checks


def _transitions_reference(masks: Tensor) -> tuple[Tensor, Tensor]:
    n = masks.shape[0]
    flat = masks.transpose(1, 2).reshape(n, masks.shape[1] * masks.shape[2]).to(torch.bool)
    before = torch.nn.functional.pad(flat[:, :-1], (1, 0), value=False)
    mask_idx, positions = torch.nonzero(flat != before, as_tuple=True)
    per_mask = torch.bincount(mask_idx, minlength=n)
    offsets = torch.nn.functional.pad(torch.cumsum(per_mask, 0), (1, 0))
    return positions.to(torch.int64), offsets.to(torch.int64)


def counts_to_string(counts: list[int]) -> bytes:
    """pycocotools' rleToString: run lengths to COCO's compressed ASCII form."""
    out = bytearray()
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(c + 48)
    return bytes(out)


def _rle_dicts(strings: list[bytes], height: int, width: int) -> list[dict[str, object]]:
    return [{"size": [height, width], "counts": s} for s in strings]


def masks_to_rle_reference(masks: Tensor) -> list[dict[str, object]]:
    """Pure-PyTorch and Python twin of :func:`masks_to_rle`."""
    n, height, width = masks.shape
    positions, offsets = _transitions_reference(masks.cpu())
    strings = []
    for k in range(n):
        starts = [0, *positions[offsets[k] : offsets[k + 1]].tolist(), height * width]
        counts = [b - a for a, b in pairwise(starts)]
        strings.append(counts_to_string(counts))
    return _rle_dicts(strings, height, width)


def masks_to_rle(masks: Tensor) -> list[dict[str, object]]:
    """COCO RLE of each mask, the dicts ``pycocotools.mask.encode`` returns.

    Args:
        masks: (N, H, W) bool or uint8 (non-zero is foreground), on CPU or CUDA.

    Returns:
        N dicts ``{"size": [H, W], "counts": bytes}``; ``pycocotools.mask.decode`` reads them.
    """
    op = "masks_to_rle"
    _checks.tensor(op, "masks", masks)
    _checks.shape(op, "masks", masks, "(N, H, W)", masks.dim() == 3)
    _checks.dtype(op, "masks", masks, (torch.bool, torch.uint8))
    if not cuda_ext.supports(masks):
        return masks_to_rle_reference(masks)
    n, height, width = masks.shape
    positions, offsets = torch.ops.cuda_ext.rle_transitions(masks)
    chars, char_offsets = torch.ops.cuda_ext.rle_strings(
        positions.cpu(), offsets.cpu(), height * width
    )
    buffer = chars.numpy().tobytes()
    bounds = char_offsets.tolist()
    strings = [buffer[bounds[k] : bounds[k + 1]] for k in range(n)]
    return _rle_dicts(strings, height, width)
