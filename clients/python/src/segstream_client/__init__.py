"""segstream's Python SDK: the API's streams, and its typed events (:mod:`.events`)."""

from segstream_client.events import DecodeError, Instance, MaskEvent, decode_event, encode_event

__all__ = ["DecodeError", "Instance", "MaskEvent", "decode_event", "encode_event"]
