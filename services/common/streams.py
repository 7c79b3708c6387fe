"""Stream records of the compacted registry topic ``segstream.streams``.

Key: the stream id. Value: the stream's spec as JSON (:class:`StreamSpec`); a tombstone (no
value) removes the stream. Ingest workers own the registry's partitions through a consumer
group, so each stream runs on exactly one live worker.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Annotated, Any

import shapely
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from services.common.events import DecodeError
from services.common.kafka import base_topics, bootstrap_topics, make_producer, registry_topic
from services.common.settings import Settings

if TYPE_CHECKING:
    from segcore.tracking.analytics import Line, Zone

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


ANALYTICS_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"
MAX_ZONES = 16  # per stream, and as many lines: metric labels stay a bounded set
MAX_LINES = 16

Coordinate = Annotated[float, Field(ge=0.0, le=1.0)]
Point = tuple[Coordinate, Coordinate]  # (x, y) normalised to the frame, (0, 0) top-left


class ZoneSpec(BaseModel):
    """A zone of a stream: a simple polygon in normalised coordinates (x, y in [0, 1], y
    down), the share of an instance's mask that must be inside it for the instance to be in,
    and the dwell after which an instance inside loiters (null: never)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=ANALYTICS_NAME, description="1-64 of letters, digits, '_.-'")
    # The 3-point minimum is checked with the rest below, once every point is valid: as a
    # length constraint, a point out of range would also count as a point missing.
    polygon: tuple[Point, ...] = Field(
        description="3-64 points [x, y], normalised to [0, 1]",
        json_schema_extra={"minItems": 3},
    )
    min_fraction: float = Field(0.5, ge=0.0, le=1.0)
    loiter_s: float | None = Field(None, gt=0, le=86_400)

    @field_validator("polygon")
    @classmethod
    def _simple(cls, value: tuple[Point, ...]) -> tuple[Point, ...]:
        if len(value) > 3 and value[0] == value[-1]:
            value = value[:-1]  # given closed: the ring closes itself
        if len(value) < 3:
            raise ValueError(f"Tuple should have at least 3 items, got {len(value)}")
        if len(value) > 64:
            raise ValueError(f"at most 64 points, got {len(value)}")
        ring = shapely.Polygon(value)
        if ring.convex_hull.area <= 0:
            raise ValueError("the polygon encloses no area (its points lie on one line)")
        if not ring.is_valid:
            reason = shapely.is_valid_reason(ring)
            raise ValueError(f"the polygon must be simple (not crossing itself): {reason}")
        return value


class LineSpec(BaseModel):
    """A counting line of a stream: the segment from ``a`` to ``b``, normalised (x, y in
    [0, 1], y down). A crossing from its left to its right, as the image shows it, is
    ``forward``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=ANALYTICS_NAME, description="1-64 of letters, digits, '_.-'")
    a: Point
    b: Point

    @field_validator("b")
    @classmethod
    def _length(cls, value: Point, info: ValidationInfo) -> Point:
        if info.data.get("a") == value:
            raise ValueError("the same point as a: a line needs a length")
        return value


def _unique(kind: str) -> Any:
    def check(items: tuple[ZoneSpec | LineSpec, ...]) -> Any:
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            if item.name in seen:
                raise ValueError(
                    f"{kind}[{index}].name: {item.name!r} is the name of "
                    f"{kind}[{seen[item.name]}] too; names must be unique"
                )
            seen[item.name] = index
        return items

    return AfterValidator(check)


Zones = Annotated[tuple[ZoneSpec, ...], Field(max_length=MAX_ZONES), _unique("zones")]
Lines = Annotated[tuple[LineSpec, ...], Field(max_length=MAX_LINES), _unique("lines")]


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
    zones: Zones = Field((), description=f"at most {MAX_ZONES}, names unique")
    lines: Lines = Field((), description=f"at most {MAX_LINES}, names unique")

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

    def zone_objects(self) -> list[Zone]:
        """The zones as segcore's analytics takes them."""
        from segcore.tracking.analytics import Zone

        return [Zone(z.name, tuple(z.polygon), z.min_fraction, z.loiter_s) for z in self.zones]

    def line_objects(self) -> list[Line]:
        """The lines as segcore's analytics takes them."""
        from segcore.tracking.analytics import Line

        return [Line(x.name, x.a, x.b) for x in self.lines]

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
