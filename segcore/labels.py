"""Label conventions: how a model's labels map to 0-based class indices.

Datasets, evaluation and mask events count classes from 0 (``class_names[i]`` is class
``i``; COCO category ``i + 1``). torchvision's Mask R-CNN reserves label 0 for the
background, so its ``class_names`` start with ``"__background__"`` and class ``i`` is its
label ``i + 1``; YOLACT and the demo model have no background label.
"""

from __future__ import annotations

BACKGROUND = "__background__"


def label_offset(model: object) -> int:
    """1 when ``model.class_names`` starts with :data:`BACKGROUND`, else 0 (also without
    ``class_names``): model label = 0-based class index + offset."""
    names = getattr(model, "class_names", None) or []
    return 1 if names and names[0] == BACKGROUND else 0
