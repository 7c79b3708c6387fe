"""segstream's Python SDK: the API's streams, and its typed events (:mod:`.events`)."""

from segstream_client.events import (
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
    "AnalyticsEvent",
    "DecodeError",
    "Instance",
    "MaskEvent",
    "decode_analytics",
    "decode_event",
    "encode_analytics",
    "encode_event",
]
