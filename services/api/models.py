"""The API's request and response bodies (pydantic models, so FastAPI validates requests and
writes the OpenAPI document from the same definitions)."""

from __future__ import annotations

import dataclasses
import time

from pydantic import BaseModel, ConfigDict, Field

from services.common.health import StreamStatus
from services.common.streams import STREAM_ID, Lines, Zones, redact


class StreamIn(BaseModel):
    """A stream to register. Numbers must be finite (NaN, ``Infinity`` and ``1e309`` get 422)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str | None = Field(None, pattern=STREAM_ID.pattern, description="generated if absent")
    url: str = Field(min_length=1, max_length=2048)
    model: str = Field(min_length=1, max_length=200)
    fps: float = Field(5.0, gt=0, le=60)
    latency_budget_ms: int | None = Field(None, ge=100, le=3_600_000)
    max_side: int | None = Field(None, ge=32, le=8192)
    realtime: bool = False
    loop: bool = False
    zones: Zones = Field((), description="zones whose enters, exits and loiters are events")
    lines: Lines = Field((), description="lines whose crossings are counted, by direction")


class StreamPatch(BaseModel):
    """The fields of a stream to change (absent: unchanged); numbers finite, as in StreamIn."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    url: str | None = Field(None, min_length=1, max_length=2048)
    model: str | None = Field(None, min_length=1, max_length=200)
    fps: float | None = Field(None, gt=0, le=60)
    latency_budget_ms: int | None = Field(None, ge=100, le=3_600_000)
    max_side: int | None = Field(None, ge=32, le=8192)
    realtime: bool | None = None
    loop: bool | None = None
    zones: Zones | None = Field(None, description="replaces every zone ([] removes them)")
    lines: Lines | None = Field(None, description="replaces every line ([] removes them)")


class Health(BaseModel):
    state: str
    reason: str = ""
    message: str = ""
    reconnects: int = 0
    frames: int = 0
    last_frame_at: float | None = None
    fps: float = 0.0
    worker: str = ""
    updated_at: float | None = None
    last_event_at: float | None = Field(
        None,
        description="capture time (Unix seconds) of the stream's newest mask event, as its "
        "ingest worker last read it (every few seconds); null before the first event",
    )
    staleness_s: float | None = Field(
        None,
        description="seconds between last_event_at and now: how far the published events "
        "trail the camera (grows while a running stream's events stop or fall behind)",
    )

    @classmethod
    def of(cls, status: StreamStatus, now: float | None = None) -> Health:
        """What a client is shown of a status hash at ``now`` (epoch seconds, default the
        current time): its message with credentials masked, and the staleness."""
        shown = {k: v for k, v in dataclasses.asdict(status).items() if k in cls.model_fields}
        stale = None
        if status.last_event_at is not None:
            stale = round(max(0.0, (time.time() if now is None else now) - status.last_event_at), 3)
        return cls(**{**shown, "message": redact(status.message), "staleness_s": stale})


class StreamOut(BaseModel):
    id: str
    url: str = Field(description="with any password masked")
    model: str
    fps: float
    latency_budget_ms: int | None
    max_side: int | None
    realtime: bool
    loop: bool
    zones: Zones = ()
    lines: Lines = ()
    health: Health | None = Field(
        description="null until a worker has written it, or when the status store could not "
        "be read right after a write that was made"
    )


class ZoneCounts(BaseModel):
    occupancy: int = Field(description="tracks in the zone now")
    entries: int
    exits: int


class LineCounts(BaseModel):
    forward: int = Field(description="crossings from the line's left (of a -> b) to its right")
    backward: int


class AnalyticsOut(BaseModel):
    """A stream's counts as its segment worker last wrote them, for every zone and line the
    stream defines now (zeros for one the worker has not counted yet)."""

    stream_id: str
    last: str | None = Field(
        description="the id of the mask event the counts are as of; null before the first"
    )
    zones: dict[str, ZoneCounts]
    lines: dict[str, LineCounts]


class ModelOut(BaseModel):
    name: str
    input_side: int | None


class Problem(BaseModel):
    detail: str
