"""Mask events: the codec lives in the SDK (``segstream_client.events``, in
``clients/python``), so the API, the workers and subscribers share one; this module is its
name inside the services."""

from segstream_client.events import (
    ANALYTICS_TYPES,
    VERSION,
    AnalyticsEvent,
    DecodeError,
    Instance,
    MaskEvent,
    decode_analytics,
    decode_event,
    encode_analytics,
    encode_event,
)

__all__ = [
    "ANALYTICS_TYPES",
    "VERSION",
    "AnalyticsEvent",
    "DecodeError",
    "Instance",
    "MaskEvent",
    "decode_analytics",
    "decode_event",
    "encode_analytics",
    "encode_event",
]
