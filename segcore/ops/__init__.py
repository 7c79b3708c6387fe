"""Python fronts of the custom ops.

Each front checks its arguments, calls the compiled kernel of ``cuda_ext`` when the library
is built (``torch.ops.cuda_ext.<op>``, dispatched by device) and its pure-PyTorch reference
otherwise.
"""

from segcore.ops.paste_masks import expand_boxes, paste_masks, paste_masks_reference

__all__ = ["expand_boxes", "paste_masks", "paste_masks_reference"]
