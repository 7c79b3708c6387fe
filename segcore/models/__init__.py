"""The architectures; importing this package registers them and their backbones (no I/O,
no device queries)."""

from segcore.models import maskrcnn, panet, rcnn_demo, yolact

__all__ = ["maskrcnn", "panet", "rcnn_demo", "yolact"]
