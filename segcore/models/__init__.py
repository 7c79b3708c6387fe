"""The architectures; importing this package registers them (no I/O, no device queries)."""

from segcore.models import maskrcnn

__all__ = ["maskrcnn"]
