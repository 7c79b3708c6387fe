"""Mask events: the codec lives in the SDK (``segstream_client.events``, in
``clients/python``), so the API, the workers and subscribers share one; this module is its
name inside the services."""

from segstream_client.events import (
    VERSION,
    DecodeError,
    Instance,
    MaskEvent,
    decode_event,
    encode_event,
)

__all__ = ["VERSION", "DecodeError", "Instance", "MaskEvent", "decode_event", "encode_event"]
