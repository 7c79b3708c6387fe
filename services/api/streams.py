"""The registry routes: ``/v1/models``, ``POST/GET/PATCH/DELETE /v1/streams[/{id}]`` and an
event's frame. Writes go to the registry topic (through the app's ``StreamTable``); responses
carry the stream's health from its Redis status hash and never a camera password.

Outages answer 503 with ``Retry-After`` (``services/api/errors.py``). A write checks that
Redis answers before it writes, and the registry acknowledges it or it was not made, so a 503
means nothing changed; a 2xx means the write was made, with ``health`` null when Redis failed
in between."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import ValidationError

import segcore
from services.api.auth import any_token, reader, writer
from services.api.errors import Unavailable, from_store
from services.api.models import (
    AnalyticsOut,
    Health,
    LineCounts,
    ModelOut,
    Problem,
    StreamIn,
    StreamOut,
    StreamPatch,
    ZoneCounts,
)
from services.api.state import ApiState, State
from services.api.table import RegistryUnavailable
from services.common.destinations import DestinationPolicy, ForbiddenDestination, Target, resolve
from services.common.health import StreamStatus
from services.common.redis import frames_key, status_key, tracks_key
from services.common.streams import FILE_SCHEME, StreamSpec, scheme_of

ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")  # a Redis stream entry id: an event's id
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
RESOLVE_TIMEOUT_S = 2.0  # a source's name resolved at registration

router = APIRouter()
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "Redis or the registry is unavailable; see Retry-After"}
}


def field_error(field: str, message: str, code: int = 422) -> HTTPException:
    """An error shaped as FastAPI's validation errors, naming the body field in ``loc``."""
    return HTTPException(code, detail=[{"loc": ["body", field], "msg": message}])


def found(state: ApiState, stream_id: str) -> StreamSpec:
    """The registered stream ``stream_id``; 404 when there is none."""
    spec = state.table.get(stream_id)
    if spec is None:
        raise HTTPException(404, f"no stream {stream_id!r}")
    return spec


async def check_source(state: ApiState, url: str, model: str) -> None:
    """422 unless ``url`` has an allowed scheme (and a host), the destination policy allows
    it (:func:`check_destination`) and ``model`` is registered."""
    scheme = scheme_of(url)
    allowed = URL_SCHEMES + ((FILE_SCHEME,) if state.settings.api_allow_files else ())
    if scheme not in allowed:
        raise field_error("url", f"scheme {scheme!r} is not one of {', '.join(allowed)}")
    if scheme != FILE_SCHEME and not re.match(r"^[a-z]+://[^/\s]+", url):
        raise field_error("url", "a URL needs a host")
    if model not in state.models:
        raise field_error("model", f"unknown model {model!r}; GET /v1/models lists them")
    await check_destination(state.destinations, url)


async def check_destination(policy: DestinationPolicy, url: str) -> None:
    """422 naming the URL (credentials masked) when ``policy`` refuses it: a file outside the
    file root, an address literal or a name resolving (within ``RESOLVE_TIMEOUT_S``) to a
    denied address or port. A name that does not resolve now passes: the ingest worker
    checks the addresses again each time it connects."""
    try:
        if scheme_of(url) == FILE_SCHEME:
            policy.file_path(url)
            return
        target = Target.of(url)
        literal = target.literal()
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = await asyncio.wait_for(
                    asyncio.to_thread(resolve, target.host, target.port), RESOLVE_TIMEOUT_S
                )
            except (OSError, TimeoutError):
                return
        policy.check(url, addresses)
    except ForbiddenDestination as exc:
        raise field_error("url", f"destination not allowed: {exc}") from None


async def health_of(state: ApiState, stream_id: str) -> Health | None:
    """The stream's health from its status hash; None before a worker has written one.
    Raises Unavailable (503) when Redis does not answer."""
    raw: dict[bytes, bytes] = await from_store(state.redis.hgetall(status_key(stream_id)))  # type: ignore[arg-type]
    status = StreamStatus.decode(raw)
    return Health.of(status) if status is not None else None


async def out(state: ApiState, spec: StreamSpec) -> StreamOut:
    return StreamOut(**spec.display(), health=await health_of(state, spec.id))


async def before_write(state: ApiState) -> None:
    """Unavailable (503, nothing written) unless Redis answers: a write is only made while
    the service can show its result."""
    await from_store(state.redis.ping(), "nothing was changed")


async def write(change: Callable[[], None]) -> None:
    """Make one registry write (``table.put``/``table.delete``); Unavailable (503) when the
    registry does not acknowledge it, which means it was not made."""
    try:
        await asyncio.to_thread(change)
    except RegistryUnavailable as exc:
        raise Unavailable(
            f"the registry (Kafka) did not acknowledge the write ({exc}); nothing was changed; "
            "try again"
        ) from None


async def written(state: ApiState, spec: StreamSpec) -> StreamOut:
    """The response to a write that was made: its health is null when Redis failed since."""
    try:
        return await out(state, spec)
    except Unavailable:
        return StreamOut(**spec.display(), health=None)


@router.get("/v1/models", tags=["models"], response_model=list[ModelOut])
async def models(state: State, _: Annotated[str, Depends(any_token)]) -> list[ModelOut]:
    return [ModelOut(name=n, input_side=segcore.input_side(n)) for n in state.models]


@router.post(
    "/v1/streams",
    tags=["streams"],
    status_code=201,
    response_model=StreamOut,
    responses={
        409: {"model": Problem},
        401: {"model": Problem},
        403: {"model": Problem},
        **UNAVAILABLE,
    },
)
async def create(body: StreamIn, state: State, _: Annotated[str, Depends(writer)]) -> StreamOut:
    await check_source(state, body.url, body.model)
    stream_id = body.id or f"cam-{uuid.uuid4().hex[:10]}"
    if state.table.get(stream_id) is not None:
        raise HTTPException(409, f"stream {stream_id!r} exists; PATCH it to change it")
    spec = StreamSpec(**{**body.model_dump(), "id": stream_id})
    await before_write(state)
    await write(lambda: state.table.put(spec))
    return await written(state, spec)


@router.get("/v1/streams", tags=["streams"], response_model=list[StreamOut], responses=UNAVAILABLE)
async def list_streams(state: State, _: Annotated[str, Depends(any_token)]) -> list[StreamOut]:
    return [await out(state, spec) for spec in state.table.all()]


@router.get(
    "/v1/streams/{stream_id}",
    tags=["streams"],
    response_model=StreamOut,
    responses={404: {"model": Problem}, **UNAVAILABLE},
)
async def show(stream_id: str, state: State, _: Annotated[str, Depends(any_token)]) -> StreamOut:
    return await out(state, found(state, stream_id))


@router.patch(
    "/v1/streams/{stream_id}",
    tags=["streams"],
    response_model=StreamOut,
    responses={404: {"model": Problem}, **UNAVAILABLE},
)
async def update(
    stream_id: str, body: StreamPatch, state: State, _: Annotated[str, Depends(writer)]
) -> StreamOut:
    spec = found(state, stream_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("url", "model", "fps", "realtime", "loop", "zones", "lines"):
        if name in changes and changes[name] is None:
            raise field_error(name, "may not be null")
    merged = {**spec.model_dump(), **changes}
    await check_source(state, merged["url"], merged["model"])
    try:
        new = StreamSpec(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HTTPException(
            422, detail=[{"loc": ["body", *first["loc"]], "msg": first["msg"]}]
        ) from None
    await before_write(state)
    await write(lambda: state.table.put(new))
    return await written(state, new)


@router.delete(
    "/v1/streams/{stream_id}",
    tags=["streams"],
    status_code=204,
    response_class=Response,
    responses={404: {"model": Problem}, **UNAVAILABLE},
)
async def remove(stream_id: str, state: State, _: Annotated[str, Depends(writer)]) -> Response:
    found(state, stream_id)
    await before_write(state)
    await write(lambda: state.table.delete(stream_id))
    return Response(status_code=204)


@router.get(
    "/v1/streams/{stream_id}/frames/{entry_id}",
    tags=["events"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}, **UNAVAILABLE},
)
async def frame(
    stream_id: str, entry_id: str, state: State, _: Annotated[str, Depends(reader)]
) -> Response:
    found(state, stream_id)
    if not ENTRY_ID.match(entry_id):
        raise HTTPException(422, "entry_id: an event id like 1764000000123-42")
    entries: Any = await from_store(state.redis.xrange(frames_key(stream_id), entry_id, entry_id))
    if not entries:
        raise HTTPException(404, f"no frame kept for event {entry_id}")
    return Response(entries[0][1][b"jpeg"], media_type="image/jpeg")


def counts_of(spec: StreamSpec, document: bytes | None) -> AnalyticsOut:
    """The counts of a tracking document (``segstream:tracks:<id>``: its ``counts`` and
    ``last``) for the zones and lines ``spec`` defines; zeros for those it lacks, and for all
    when there is no document or it does not parse (a worker writes the next one soon)."""
    counts: dict[str, Any] = {}
    last = None
    if document:
        try:
            doc = json.loads(document)
            counts = doc.get("counts") or {}
            last = doc.get("last") if isinstance(doc.get("last"), str) else None
        except (ValueError, AttributeError, RecursionError):
            counts = {}

    def of(kind: str, name: str) -> dict[str, int]:
        section = counts.get(kind) if isinstance(counts, dict) else None
        value = section.get(name) if isinstance(section, dict) else None
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}

    zones = {}
    for zone in spec.zones:
        value = of("zones", zone.name)
        zones[zone.name] = ZoneCounts(
            occupancy=int(value.get("occupancy", 0)),
            entries=int(value.get("entries", 0)),
            exits=int(value.get("exits", 0)),
        )
    lines = {}
    for line in spec.lines:
        value = of("lines", line.name)
        lines[line.name] = LineCounts(
            forward=int(value.get("forward", 0)), backward=int(value.get("backward", 0))
        )
    return AnalyticsOut(stream_id=spec.id, last=last, zones=zones, lines=lines)


@router.get(
    "/v1/streams/{stream_id}/analytics",
    tags=["analytics"],
    response_model=AnalyticsOut,
    responses={404: {"model": Problem}, **UNAVAILABLE},
)
async def analytics(
    stream_id: str, state: State, _: Annotated[str, Depends(reader)]
) -> AnalyticsOut:
    """Occupancy and entries/exits of each zone and crossings of each line, by direction,
    as of the stream's newest mask event."""
    spec = found(state, stream_id)
    document: Any = await from_store(state.redis.get(tracks_key(stream_id)))
    return counts_of(spec, document)
