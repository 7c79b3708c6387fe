"""Stream records of the compacted registry topic ``segstream.streams``.

Key: the stream id. Value: the stream's spec as JSON (:class:`StreamSpec`); a tombstone (no
value) removes the stream. Ingest workers own the registry's partitions through a consumer
group, so each stream runs on exactly one live worker.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.common.events import DecodeError
from services.common.kafka import base_topics, bootstrap_topics, make_producer, registry_topic
from services.common.settings import Settings

STREAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp")
FILE_SCHEME = "file"
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` with any ``user:password@`` of a URL in it masked, for logs and messages."""
    return _CREDENTIALS.sub("***@", text)


def scheme_of(url: str) -> str:
    """The URL's scheme; a bare path counts as ``file``."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else FILE_SCHEME


def is_live(url: str) -> bool:
    """Whether ``url`` is a camera or network source (anything but a file)."""
    return scheme_of(url) != FILE_SCHEME


class StreamSpec(BaseModel):
    """What an operator registers: where the camera is and how to segment it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    url: str
    model: str
    fps: float = Field(5.0, gt=0, le=60, description="frames per second to sample")
    latency_budget_ms: int | None = Field(
        None,
        ge=100,
        le=3_600_000,
        description="frames older than this are dropped unsegmented; default: 5 s for live "
        "sources, none for files",
    )
    max_side: int | None = Field(
        None, ge=32, le=8192, description="shrink frames to at most this shorter side"
    )
    realtime: bool = Field(
        False, description="a file: play it at its own frame rate, as a camera would"
    )
    loop: bool = Field(False, description="a file: start again when it ends (never finished)")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not STREAM_ID.match(value):
            raise ValueError("stream id: 1-128 of letters, digits, '_', '.', '-'")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme = scheme_of(value)
        if scheme not in (*LIVE_SCHEMES, FILE_SCHEME):
            raise ValueError(f"url scheme {scheme!r} is not one of rtsp, rtsps, http(s), file")
        return value

    @property
    def live(self) -> bool:
        return is_live(self.url)

    @property
    def budget_s(self) -> float | None:
        """The latency budget in seconds (None: no budget)."""
        if self.latency_budget_ms is not None:
            return self.latency_budget_ms / 1000.0
        return 5.0 if self.live else None

    def display(self) -> dict[str, Any]:
        """The spec with camera credentials masked: what logs and responses may show."""
        return {**self.model_dump(), "url": redact(self.url)}

    def to_record(self) -> tuple[bytes, bytes]:
        return self.id.encode(), self.model_dump_json().encode()


def decode_spec(key: bytes | None, value: bytes) -> StreamSpec:
    """The spec of a registry record; DecodeError names what is wrong (never the URL)."""
    if not key:
        raise DecodeError("registry record has no key (the stream id)")
    try:
        data = json.loads(value)
        spec = StreamSpec.model_validate(data)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            fields = ", ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise DecodeError(f"registry record {key!r}: {fields}") from None
        raise DecodeError(f"registry record {key!r}: not JSON") from None
    if spec.id.encode() != key:
        raise DecodeError(f"registry record {key!r}: key and id {spec.id!r} differ")
    return spec


def _producer(settings: Settings) -> Any:
    bootstrap_topics(settings, base_topics(settings))
    return make_producer(settings)


def put_stream(settings: Settings, spec: StreamSpec) -> None:
    """Write (add or replace) a stream's record; returns once the broker has it."""
    producer = _producer(settings)
    try:
        key, value = spec.to_record()
        producer.send(registry_topic(settings), key=key, value=value).get(timeout=30)
    finally:
        producer.close()


def delete_stream(settings: Settings, stream_id: str) -> None:
    """Write the tombstone that removes a stream."""
    producer = _producer(settings)
    try:
        producer.send(registry_topic(settings), key=stream_id.encode(), value=None).get(timeout=30)
    finally:
        producer.close()
