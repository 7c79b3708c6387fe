"""Python fronts of the custom ops.

Each front checks its arguments, calls the compiled kernel of ``cuda_ext`` when the library
is built (``torch.ops.cuda_ext.<op>``, dispatched by device) and its pure-PyTorch reference
otherwise.
"""

from segcore.ops.masks_to_rle import masks_to_rle, masks_to_rle_reference
from segcore.ops.paste_masks import expand_boxes, paste_masks, paste_masks_reference

__all__ = [
    "expand_boxes",
    "masks_to_rle",
    "masks_to_rle_reference",
    "paste_masks",
    "paste_masks_reference",
]
