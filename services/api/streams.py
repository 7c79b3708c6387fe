"""The registry routes: ``/v1/models``, ``POST/GET/PATCH/DELETE /v1/streams[/{id}]`` and an
event's frame. Writes go to the registry topic (through the app's ``StreamTable``); responses
carry the stream's health from its Redis status hash and never a camera password."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import ValidationError

import segcore
from services.api.auth import any_token, reader, writer
from services.api.models import Health, ModelOut, Problem, StreamIn, StreamOut, StreamPatch
from services.api.state import ApiState, State
from services.common.health import StreamStatus
from services.common.redis import frames_key, status_key
from services.common.streams import FILE_SCHEME, StreamSpec, scheme_of

ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")  # a Redis stream entry id: an event's id
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")

router = APIRouter()


def field_error(field: str, message: str, code: int = 422) -> HTTPException:
    """An error shaped as FastAPI's validation errors, naming the body field in ``loc``."""
    return HTTPException(code, detail=[{"loc": ["body", field], "msg": message}])


def found(state: ApiState, stream_id: str) -> StreamSpec:
    """The registered stream ``stream_id``; 404 when there is none."""
    spec = state.table.get(stream_id)
    if spec is None:
        raise HTTPException(404, f"no stream {stream_id!r}")
    return spec


def check_source(state: ApiState, url: str, model: str) -> None:
    """422 unless ``url`` has an allowed scheme (and a host) and ``model`` is registered."""
    scheme = scheme_of(url)
    allowed = URL_SCHEMES + ((FILE_SCHEME,) if state.settings.api_allow_files else ())
    if scheme not in allowed:
        raise field_error("url", f"scheme {scheme!r} is not one of {', '.join(allowed)}")
    if scheme != FILE_SCHEME and not re.match(r"^[a-z]+://[^/\s]+", url):
        raise field_error("url", "a URL needs a host")
    if model not in state.models:
        raise field_error("model", f"unknown model {model!r}; GET /v1/models lists them")


async def health_of(state: ApiState, stream_id: str) -> Health | None:
    """The stream's health from its status hash; None before a worker has written one."""
    raw: dict[bytes, bytes] = await state.redis.hgetall(status_key(stream_id))  # type: ignore[assignment]
    status = StreamStatus.decode(raw)
    return Health.of(status) if status is not None else None


async def out(state: ApiState, spec: StreamSpec) -> StreamOut:
    return StreamOut(**spec.display(), health=await health_of(state, spec.id))


@router.get("/v1/models", tags=["models"], response_model=list[ModelOut])
async def models(state: State, _: Annotated[str, Depends(any_token)]) -> list[ModelOut]:
    return [ModelOut(name=n, input_side=segcore.input_side(n)) for n in state.models]


@router.post(
    "/v1/streams",
    tags=["streams"],
    status_code=201,
    response_model=StreamOut,
    responses={409: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem}},
)
async def create(body: StreamIn, state: State, _: Annotated[str, Depends(writer)]) -> StreamOut:
    check_source(state, body.url, body.model)
    stream_id = body.id or f"cam-{uuid.uuid4().hex[:10]}"
    if state.table.get(stream_id) is not None:
        raise HTTPException(409, f"stream {stream_id!r} exists; PATCH it to change it")
    spec = StreamSpec(**{**body.model_dump(), "id": stream_id})
    await asyncio.to_thread(state.table.put, spec)
    return await out(state, spec)


@router.get("/v1/streams", tags=["streams"], response_model=list[StreamOut])
async def list_streams(state: State, _: Annotated[str, Depends(any_token)]) -> list[StreamOut]:
    return [await out(state, spec) for spec in state.table.all()]


@router.get(
    "/v1/streams/{stream_id}",
    tags=["streams"],
    response_model=StreamOut,
    responses={404: {"model": Problem}},
)
async def show(stream_id: str, state: State, _: Annotated[str, Depends(any_token)]) -> StreamOut:
    return await out(state, found(state, stream_id))


@router.patch(
    "/v1/streams/{stream_id}",
    tags=["streams"],
    response_model=StreamOut,
    responses={404: {"model": Problem}},
)
async def update(
    stream_id: str, body: StreamPatch, state: State, _: Annotated[str, Depends(writer)]
) -> StreamOut:
    spec = found(state, stream_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("url", "model", "fps", "realtime", "loop"):
        if name in changes and changes[name] is None:
            raise field_error(name, "may not be null")
    merged = {**spec.model_dump(), **changes}
    check_source(state, merged["url"], merged["model"])
    try:
        new = StreamSpec(**merged)
    except ValidationError as exc:
        raise field_error(str(exc.errors()[0]["loc"][0]), exc.errors()[0]["msg"]) from None
    await asyncio.to_thread(state.table.put, new)
    return await out(state, new)


@router.delete(
    "/v1/streams/{stream_id}",
    tags=["streams"],
    status_code=204,
    response_class=Response,
    responses={404: {"model": Problem}},
)
async def remove(stream_id: str, state: State, _: Annotated[str, Depends(writer)]) -> Response:
    found(state, stream_id)
    await asyncio.to_thread(state.table.delete, stream_id)
    return Response(status_code=204)


@router.get(
    "/v1/streams/{stream_id}/frames/{entry_id}",
    tags=["events"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}},
)
async def frame(
    stream_id: str, entry_id: str, state: State, _: Annotated[str, Depends(reader)]
) -> Response:
    found(state, stream_id)
    if not ENTRY_ID.match(entry_id):
        raise HTTPException(422, "entry_id: an event id like 1764000000123-42")
    entries: Any = await state.redis.xrange(frames_key(stream_id), entry_id, entry_id)
    if not entries:
        raise HTTPException(404, f"no frame kept for event {entry_id}")
    return Response(entries[0][1][b"jpeg"], media_type="image/jpeg")
