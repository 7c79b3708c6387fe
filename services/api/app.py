"""The REST API and event subscriptions (FastAPI, served by uvicorn).

Streams: ``POST/GET/PATCH/DELETE /v1/streams[/{id}]`` write and read the registry topic;
responses carry the stream's health from Redis and never its camera password. Events:
``/v1/streams/{id}/events`` as a WebSocket and as Server-Sent Events, resumable from an event
id, filtered on the server (classes, minimum score, zone). Every route needs a bearer token
except ``/healthz``, ``/readyz`` and ``/metrics``; subscriptions and the viewer also take it
as ``access_token`` in the query (browsers cannot set headers on WebSocket or EventSource).
"""

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import (
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import segcore
from services.api.auth import Tokens, load_tokens
from services.api.filters import EventFilter, FilterError
from services.api.table import StreamTable
from services.common.events import DecodeError, decode_event, encode_event
from services.common.metrics import PipelineMetrics
from services.common.redis import frames_key, make_async_redis, masks_key, status_key
from services.common.settings import Settings
from services.common.streams import FILE_SCHEME, STREAM_ID, StreamSpec, redact, scheme_of

ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
VIEWER = Path(__file__).with_name("viewer.html")


# --- request and response models ------------------------------------------------------------
class StreamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, pattern=STREAM_ID.pattern, description="generated if absent")
    url: str = Field(min_length=1, max_length=2048)
    model: str = Field(min_length=1, max_length=200)
    fps: float = Field(5.0, gt=0, le=60)
    latency_budget_ms: int | None = Field(None, ge=100, le=3_600_000)
    max_side: int | None = Field(None, ge=32, le=8192)
    realtime: bool = False
    loop: bool = False


class StreamPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, min_length=1, max_length=2048)
    model: str | None = Field(None, min_length=1, max_length=200)
    fps: float | None = Field(None, gt=0, le=60)
    latency_budget_ms: int | None = Field(None, ge=100, le=3_600_000)
    max_side: int | None = Field(None, ge=32, le=8192)
    realtime: bool | None = None
    loop: bool | None = None


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


class StreamOut(BaseModel):
    id: str
    url: str = Field(description="with any password masked")
    model: str
    fps: float
    latency_budget_ms: int | None
    max_side: int | None
    realtime: bool
    loop: bool
    health: Health | None = Field(description="null until a worker has written it")


class ModelOut(BaseModel):
    name: str
    input_side: int | None


class Problem(BaseModel):
    detail: str


def _field_error(field: str, message: str, code: int = 422) -> HTTPException:
    return HTTPException(code, detail=[{"loc": ["body", field], "msg": message}])


# --- application state ---------------------------------------------------------------------
@dataclass
class ApiState:
    settings: Settings
    table: StreamTable
    redis: aioredis.Redis
    tokens: Tokens
    metrics: PipelineMetrics
    models: list[str]


class BodyLimit:
    """ASGI middleware: request bodies above ``limit`` bytes get 413 before any route."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            response = JSONResponse(
                {"detail": f"request body over {self.limit} bytes"}, status_code=413
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(
    settings: Settings,
    *,
    table: StreamTable | None = None,
    metrics: PipelineMetrics | None = None,
) -> FastAPI:
    """The API of ``settings``' Kafka and Redis (a registry view is started unless given)."""
    tokens = Tokens(load_tokens(settings))
    state_box: dict[str, ApiState] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        view: StreamTable = (
            table if table is not None else await asyncio.to_thread(StreamTable, settings)
        )
        state_box["s"] = ApiState(
            settings,
            view,
            make_async_redis(settings, health_check_interval=10),
            tokens,
            metrics or PipelineMetrics(),
            segcore.list_models(),
        )
        await asyncio.to_thread(view.wait_ready, 30.0)
        try:
            yield
        finally:
            await state_box["s"].redis.aclose()
            if table is None:
                await asyncio.to_thread(view.close)

    app = FastAPI(
        title="segstream",
        version="1",
        description="Camera streams in, instance masks out.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)

    def state() -> ApiState:
        return state_box["s"]

    @app.middleware("http")
    async def count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        if "s" in state_box:
            m = state_box["s"].metrics
            m.api_requests.labels(request.method, path, str(response.status_code)).inc()
            m.api_request_seconds.labels(request.method, path).observe(
                time.perf_counter() - started
            )
        return response

    # --- auth ---------------------------------------------------------------------------------
    def bearer(authorization: str | None, query_token: str | None) -> str | None:
        if authorization:
            kind, _, value = authorization.partition(" ")
            if kind.lower() != "bearer" or not value:
                return None
            return value.strip()
        return query_token

    def require(scope: str | None, *, query: bool = False) -> Callable[..., str]:
        def check(
            authorization: Annotated[str | None, Header()] = None,
            access_token: Annotated[str | None, Query(include_in_schema=False)] = None,
        ) -> str:
            presented = bearer(authorization, access_token if query else None)
            if not presented:
                raise HTTPException(
                    401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
                )
            found = tokens.match(presented)
            if found is None:
                raise HTTPException(
                    401, "the token is not valid", headers={"WWW-Authenticate": "Bearer"}
                )
            name, scopes = found
            if scope is not None and scope not in scopes:
                raise HTTPException(403, f"the token lacks the scope {scope}")
            return name

        return check

    any_token = require(None)
    writer = require("streams:write")
    reader = require("events:read", query=True)

    # --- helpers ------------------------------------------------------------------------------
    async def health_of(stream_id: str) -> Health | None:
        raw: dict[bytes, bytes] = await state().redis.hgetall(status_key(stream_id))  # type: ignore[assignment]
        if not raw:
            return None
        fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
        try:
            return Health(
                state=fields.get("state", "unknown"),
                reason=fields.get("reason", ""),
                message=redact(fields.get("message", "")),
                reconnects=int(fields.get("reconnects", "0")),
                frames=int(fields.get("frames", "0")),
                last_frame_at=float(fields["last_frame_at"]) or None
                if "last_frame_at" in fields
                else None,
                fps=float(fields.get("fps", "0")),
                worker=fields.get("worker", ""),
                updated_at=float(fields["updated_at"]) if "updated_at" in fields else None,
            )
        except ValueError:
            return Health(state=fields.get("state", "unknown"))

    async def out(spec: StreamSpec) -> StreamOut:
        shown = spec.display()
        return StreamOut(**shown, health=await health_of(spec.id))

    def check_source(url: str, model: str) -> None:
        scheme = scheme_of(url)
        allowed = URL_SCHEMES + ((FILE_SCHEME,) if settings.api_allow_files else ())
        if scheme not in allowed:
            raise _field_error("url", f"scheme {scheme!r} is not one of {', '.join(allowed)}")
        if scheme != FILE_SCHEME and not re.match(r"^[a-z]+://[^/\s]+", url):
            raise _field_error("url", "a URL needs a host")
        if model not in state().models:
            raise _field_error("model", f"unknown model {model!r}; GET /v1/models lists them")

    def found(stream_id: str) -> StreamSpec:
        spec = state().table.get(stream_id)
        if spec is None:
            raise HTTPException(404, f"no stream {stream_id!r}")
        return spec

    # --- routes -------------------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"model": Problem}})
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(state().redis.ping(), timeout=2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {type(exc).__name__}"
        view = state().table
        checks["kafka"] = "ok" if view.connected and view.caught_up.is_set() else "unavailable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics_route() -> Response:
        return Response(generate_latest(state().metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", tags=["models"], response_model=list[ModelOut])
    async def models(_: Annotated[str, Depends(any_token)]) -> list[ModelOut]:
        return [ModelOut(name=n, input_side=segcore.input_side(n)) for n in state().models]

    @app.post(
        "/v1/streams",
        tags=["streams"],
        status_code=201,
        response_model=StreamOut,
        responses={409: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem}},
    )
    async def create(body: StreamIn, _: Annotated[str, Depends(writer)]) -> StreamOut:
        check_source(body.url, body.model)
        stream_id = body.id or f"cam-{uuid.uuid4().hex[:10]}"
        if state().table.get(stream_id) is not None:
            raise HTTPException(409, f"stream {stream_id!r} exists; PATCH it to change it")
        spec = StreamSpec(**{**body.model_dump(), "id": stream_id})
        await asyncio.to_thread(state().table.put, spec)
        return await out(spec)

    @app.get("/v1/streams", tags=["streams"], response_model=list[StreamOut])
    async def list_streams(_: Annotated[str, Depends(any_token)]) -> list[StreamOut]:
        return [await out(spec) for spec in state().table.all()]

    @app.get(
        "/v1/streams/{stream_id}",
        tags=["streams"],
        response_model=StreamOut,
        responses={404: {"model": Problem}},
    )
    async def show(stream_id: str, _: Annotated[str, Depends(any_token)]) -> StreamOut:
        return await out(found(stream_id))

    @app.patch(
        "/v1/streams/{stream_id}",
        tags=["streams"],
        response_model=StreamOut,
        responses={404: {"model": Problem}},
    )
    async def update(
        stream_id: str, body: StreamPatch, _: Annotated[str, Depends(writer)]
    ) -> StreamOut:
        spec = found(stream_id)
        changes = body.model_dump(exclude_unset=True)
        for name in ("url", "model", "fps", "realtime", "loop"):
            if name in changes and changes[name] is None:
                raise _field_error(name, "may not be null")
        merged = {**spec.model_dump(), **changes}
        check_source(merged["url"], merged["model"])
        try:
            new = StreamSpec(**merged)
        except ValidationError as exc:
            raise _field_error(str(exc.errors()[0]["loc"][0]), exc.errors()[0]["msg"]) from None
        await asyncio.to_thread(state().table.put, new)
        return await out(new)

    @app.delete(
        "/v1/streams/{stream_id}",
        tags=["streams"],
        status_code=204,
        response_class=Response,
        responses={404: {"model": Problem}},
    )
    async def remove(stream_id: str, _: Annotated[str, Depends(writer)]) -> Response:
        found(stream_id)
        await asyncio.to_thread(state().table.delete, stream_id)
        return Response(status_code=204)

    @app.get(
        "/v1/streams/{stream_id}/frames/{entry_id}",
        tags=["events"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}},
    )
    async def frame(stream_id: str, entry_id: str, _: Annotated[str, Depends(reader)]) -> Response:
        found(stream_id)
        if not ENTRY_ID.match(entry_id):
            raise HTTPException(422, "entry_id: an event id like 1764000000123-42")
        entries: Any = await state().redis.xrange(frames_key(stream_id), entry_id, entry_id)
        if not entries:
            raise HTTPException(404, f"no frame kept for event {entry_id}")
        return Response(entries[0][1][b"jpeg"], media_type="image/jpeg")

    # --- subscriptions ------------------------------------------------------------------------
    def subscription_args(
        from_id: str | None, classes: str | None, min_score: float | None, zone: str | None
    ) -> EventFilter:
        if from_id is not None and not ENTRY_ID.match(from_id):
            raise HTTPException(422, "from_id: an event id like 1764000000123-42")
        try:
            return EventFilter.parse(classes, min_score, zone)
        except FilterError as exc:
            raise HTTPException(422, str(exc)) from None

    async def read_events(
        stream_id: str, from_id: str | None, queue: asyncio.Queue[tuple[str, bytes] | None]
    ) -> str | None:
        """Feed ``queue`` with (id, event) from Redis until cancelled; returns a reason to
        drop the subscriber when it falls too far behind."""
        client: Any = state().redis
        stall_s = state().settings.api_subscriber_stall_s
        last = from_id or "$"
        if last == "$":
            newest = await client.xrevrange(masks_key(stream_id), count=1)
            last = newest[0][0].decode() if newest else "0-0"
        while True:
            try:
                found_ = await client.xread({masks_key(stream_id): last}, count=100, block=500)
            except aioredis.RedisError:
                await asyncio.sleep(1)
                continue
            for _key, entries in found_ or []:
                for entry, fields in entries:
                    last = entry.decode()
                    try:  # a burst may fill the queue for a moment; a stalled client, for long
                        await asyncio.wait_for(queue.put((last, fields[b"event"])), stall_s)
                    except TimeoutError:
                        return (
                            f"subscriber too slow: {queue.maxsize} events waited over "
                            f"{stall_s:.0f} s"
                        )

    def filtered(flt: EventFilter, raw: bytes) -> bytes | None:
        if not flt.active:
            return raw
        try:
            event = flt.apply(decode_event(raw))
        except DecodeError:
            return None
        return encode_event(event) if event is not None else None

    async def pump(
        stream_id: str,
        from_id: str | None,
        flt: EventFilter,
        send: Callable[[str, bytes], Coroutine[Any, Any, None]],
        kind: str,
    ) -> str:
        """Deliver events through ``send`` until the reader stops; returns the close reason."""
        m = state().metrics
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(
            maxsize=state().settings.api_subscriber_queue
        )
        reader_task = asyncio.create_task(read_events(stream_id, from_id, queue))
        getter: asyncio.Task[tuple[str, bytes] | None] | None = None
        m.subscribers.labels(kind).inc()
        try:
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getter, reader_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    reason = reader_task.result() or "ended"
                    m.subscribers_dropped.labels(kind, "slow").inc()
                    return reason
                item = getter.result()
                if item is None:
                    return "ended"
                entry, raw = item
                payload = filtered(flt, raw)
                if payload is None:
                    continue
                # A client that stops reading stalls this send; the reader meanwhile fills
                # the queue and gives up on it, which ends the send too.
                sending: asyncio.Task[None] = asyncio.create_task(send(entry, payload))
                done, _ = await asyncio.wait(
                    {sending, reader_task}, timeout=30, return_when=asyncio.FIRST_COMPLETED
                )
                if sending not in done:
                    sending.cancel()
                    m.subscribers_dropped.labels(kind, "slow").inc()
                    if reader_task.done():
                        return reader_task.result() or "subscriber too slow"
                    return "subscriber too slow: one event waited 30 s to be sent"
                sending.result()
        finally:
            pending = [t for t in (getter, reader_task) if t is not None]
            for task in pending:
                task.cancel()
            # A reader cancelled inside a blocking XREAD can take its connection down
            # slowly; never hold the handler (and the gauge) for it.
            await asyncio.wait(pending, timeout=2)
            m.subscribers.labels(kind).dec()

    @app.websocket("/v1/streams/{stream_id}/events")
    async def events_ws(
        websocket: WebSocket,
        stream_id: str,
        from_id: str | None = None,
        classes: str | None = None,
        min_score: float | None = None,
        zone: str | None = None,
        access_token: str | None = None,
    ) -> None:
        # Accept first: a close before the handshake reaches the client as a bare HTTP 403,
        # without the close code and reason that tell it what was wrong.
        await websocket.accept()
        presented = bearer(websocket.headers.get("authorization"), access_token)
        match = tokens.match(presented) if presented else None
        if match is None or "events:read" not in match[1]:
            await websocket.close(code=4401 if match is None else 4403, reason="token")
            return
        if state().table.get(stream_id) is None:
            await websocket.close(code=4404, reason=f"no stream {stream_id!r}")
            return
        try:
            flt = subscription_args(from_id, classes, min_score, zone)
        except HTTPException as exc:
            await websocket.close(code=4422, reason=str(exc.detail)[:120])
            return

        async def send(entry: str, payload: bytes) -> None:
            await websocket.send_text('{"id":"' + entry + '","event":' + payload.decode() + "}")

        async def watch_close() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return

        closer = asyncio.create_task(watch_close())
        pumping = asyncio.create_task(pump(stream_id, from_id, flt, send, "websocket"))
        try:
            done, _ = await asyncio.wait({closer, pumping}, return_when=asyncio.FIRST_COMPLETED)
            if pumping in done and not closer.done():
                reason = "ended"
                with contextlib.suppress(Exception):
                    reason = pumping.result()
                await websocket.close(code=1013 if "slow" in reason else 1000, reason=reason[:120])
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for task in (closer, pumping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    @app.get(
        "/v1/streams/{stream_id}/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": Problem}},
    )
    async def events_sse(
        stream_id: str,
        _: Annotated[str, Depends(reader)],
        from_id: str | None = None,
        classes: str | None = None,
        min_score: float | None = None,
        zone: str | None = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        found(stream_id)
        flt = subscription_args(last_event_id or from_id, classes, min_score, zone)
        start = last_event_id or from_id

        async def body() -> AsyncIterator[bytes]:
            chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

            async def send(entry: str, payload: bytes) -> None:
                await chunks.put(b"id: " + entry.encode() + b"\ndata: " + payload + b"\n\n")

            async def run() -> None:
                reason = await pump(stream_id, start, flt, send, "sse")
                with contextlib.suppress(asyncio.QueueFull):
                    chunks.put_nowait(f"event: close\ndata: {json.dumps(reason)}\n\n".encode())

            task = asyncio.create_task(run())
            try:
                yield b": subscribed\n\n"
                idle = 0.0
                while True:
                    try:
                        chunk = await asyncio.wait_for(chunks.get(), timeout=1)
                    except TimeoutError:
                        if task.done():
                            return
                        idle += 1
                        if idle >= 15:
                            idle = 0.0
                            yield b": keep-alive\n\n"
                        continue
                    idle = 0.0
                    yield chunk
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    @app.get("/viewer", response_class=HTMLResponse, include_in_schema=False)
    async def viewer(_: Annotated[str, Depends(reader)]) -> HTMLResponse:
        return HTMLResponse(VIEWER.read_text(), headers={"Cache-Control": "no-store"})

    @app.exception_handler(ValidationError)
    async def invalid(_request: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse({"detail": exc.errors(include_url=False)}, status_code=422)

    return app
