"""Python fronts of the custom ops.

Each front checks its arguments (a bad one raises ValueError naming it), calls the compiled
kernel of ``cuda_ext`` when the library is built (``torch.ops.cuda_ext.<op>``, dispatched by
device) and its pure-PyTorch reference otherwise.
"""

from segcore.ops.all_levels_roi_align import (
    all_levels_roi_align,
    all_levels_roi_align_reference,
)
from segcore.ops.assemble_masks import assemble_masks, assemble_masks_reference
from segcore.ops.fast_nms import fast_nms, fast_nms_reference
from segcore.ops.masks_to_rle import masks_to_rle, masks_to_rle_reference
from segcore.ops.multiscale_roi_align import (
    multiscale_roi_align,
    multiscale_roi_align_reference,
)
from segcore.ops.paste_masks import expand_boxes, paste_masks, paste_masks_reference
from segcore.ops.preprocess_frames import preprocess_frames, preprocess_frames_reference

__all__ = [
    "all_levels_roi_align",
    "all_levels_roi_align_reference",
    "assemble_masks",
    "assemble_masks_reference",
    "expand_boxes",
    "fast_nms",
    "fast_nms_reference",
    "masks_to_rle",
    "masks_to_rle_reference",
    "multiscale_roi_align",
    "multiscale_roi_align_reference",
    "paste_masks",
    "paste_masks_reference",
    "preprocess_frames",
    "preprocess_frames_reference",
]
