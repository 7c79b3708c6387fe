"""Event subscriptions: ``/v1/streams/{id}/events`` (mask events) and
``/v1/streams/{id}/analytics/events`` (zone and line events), each as a WebSocket and, on GET,
as Server-Sent Events, filtered on the server and resumable from an event id.

The two kinds differ only in the Redis stream read (``segstream:masks:<id>``, whose entry ids
derive from capture time and seq, or ``segstream:analytics:<id>``, whose ids Redis assigns:
both only grow) and in the filter (a :class:`~services.api.filters.Selector`); everything
below serves both.

Every subscriber has its own reader (:func:`read_events`, ``XREAD BLOCK`` on the stream's
Redis stream) feeding its own bounded queue, drained by :func:`pump` into the transport.
Where reading starts is fixed before the client hears anything: the ``from_id`` given, else
the stream's newest entry at that moment (:func:`start_after`). The WebSocket fixes it before
completing the handshake and sends ``{"subscribed": "<id>"}`` as its first message; SSE
fixes it before the response starts and sends the comment ``: subscribed <id>`` first. So
every event added after a client's connect returns is delivered, and a client that resumes
from the id it was told loses nothing either.

WebSocket messages: ``{"subscribed": id}`` once, then ``{"id": entry id, "event": event}``.
Close codes: 4401/4403 (token, scope), 4404 (stream), 4422 (parameters), 1013 (subscriber too
slow, or the event store unavailable), 1000 (ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import redis.asyncio as aioredis
from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Query,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import StreamingResponse

from services.api.auth import AuthError, authorize, reader
from services.api.filters import AnalyticsFilter, EventFilter, FilterError, Selector
from services.api.models import Problem
from services.api.state import ApiState, State, state_of
from services.api.streams import ENTRY_ID, found
from services.common.events import ANALYTICS_TYPES
from services.common.redis import analytics_key, masks_key

Queue = asyncio.Queue[tuple[str, bytes] | None]  # (entry id, encoded event); None: the end
Send = Callable[[str, bytes], Coroutine[Any, Any, None]]  # (entry id, encoded event)
SEND_TIMEOUT_S = 30.0  # one event that long in a transport's send drops the subscriber

router = APIRouter(tags=["events"])


@dataclass(frozen=True)
class Subscription:
    """One subscriber: its stream, the entry id it reads after (exclusive, never ``$``), its
    filter, its transport's label in the metrics (``websocket`` or ``sse``) and the Redis
    stream it reads (the stream's mask events unless given)."""

    stream_id: str
    after: str
    flt: Selector
    kind: str
    key: str = ""

    @property
    def source(self) -> str:
        return self.key or masks_key(self.stream_id)


class Refusal(NamedTuple):
    """Why a WebSocket subscription is refused: its close code and reason."""

    code: int
    reason: str


def check_from(from_id: str | None) -> None:
    """FilterError naming ``from_id`` unless it is absent or an entry id."""
    if from_id is not None and not ENTRY_ID.match(from_id):
        raise FilterError("from_id: an event id like 1764000000123-42")


def event_filter(
    from_id: str | None, classes: str | None, min_score: str | None, zone: str | None
) -> EventFilter:
    """The filter of a subscription's parameters, as the query gave them (text: the route
    validates them here, so a bad one is answered with its name, 4422 or 422, rather than by
    the framework before the route runs); raises FilterError naming a bad one."""
    check_from(from_id)
    return EventFilter.parse(classes, min_score, zone)


def analytics_filter(
    from_id: str | None,
    types: str | None,
    zones: str | None,
    lines: str | None,
    labels: str | None,
) -> AnalyticsFilter:
    """The filter of an analytics subscription's parameters, as :func:`event_filter`."""
    check_from(from_id)
    return AnalyticsFilter.parse(types, zones, lines, labels)


async def start_after(client: aioredis.Redis, key: str, from_id: str | None) -> str:
    """The entry id a subscription of the Redis stream ``key`` reads after: ``from_id``,
    else the stream's newest entry now (``0-0`` while it has none). Entry ids only grow, so
    every event added from here on comes after it. Raises RedisError when Redis does not
    answer."""
    if from_id is not None:
        return from_id
    newest: Any = await client.xrevrange(key, count=1)
    return str(newest[0][0].decode()) if newest else "0-0"


async def read_events(state: ApiState, sub: Subscription, queue: Queue) -> str | None:
    """Feed ``queue`` with the events after ``sub.after`` until cancelled (riding out Redis
    outages); returns a reason to drop the subscriber when its queue stays full for
    ``api_subscriber_stall_s``."""
    client: Any = state.redis
    stall_s = state.settings.api_subscriber_stall_s
    key = sub.source
    last = sub.after
    while True:
        try:
            found_ = await client.xread({key: last}, count=100, block=500)
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
                        f"subscriber too slow: {queue.maxsize} events waited over {stall_s:.0f} s"
                    )


def filtered(flt: Selector, raw: bytes) -> bytes | None:
    """What ``flt`` sends of the encoded event (a mask event with only the instances it
    passes); None to send nothing."""
    return flt.select(raw)


class Ended(NamedTuple):
    """How a subscription ended: ``dropped`` when the subscriber was too slow (WebSocket
    close code 1013, else 1000), and the reason told to the client."""

    reason: str
    dropped: bool = False

    @property
    def close_code(self) -> int:
        return 1013 if self.dropped else 1000


async def pump(state: ApiState, sub: Subscription, send: Send) -> Ended:
    """Deliver ``sub``'s events through ``send`` until the reader stops or a send stalls;
    returns how the subscription ended."""
    m = state.metrics
    queue: Queue = asyncio.Queue(maxsize=state.settings.api_subscriber_queue)
    reader_task = asyncio.create_task(read_events(state, sub, queue))
    getter: asyncio.Task[tuple[str, bytes] | None] | None = None
    m.subscribers.labels(sub.kind).inc()
    try:
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, reader_task}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                m.subscribers_dropped.labels(sub.kind, "slow").inc()
                return Ended(reader_task.result() or "subscriber too slow", dropped=True)
            item = getter.result()
            if item is None:
                return Ended("ended")
            entry, raw = item
            payload = filtered(sub.flt, raw)
            if payload is None:
                continue
            # A client that stops reading stalls this send; the reader meanwhile fills
            # the queue and gives up on it, which ends the send too.
            sending: asyncio.Task[None] = asyncio.create_task(send(entry, payload))
            done, _ = await asyncio.wait(
                {sending, reader_task}, timeout=SEND_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
            if sending not in done:
                sending.cancel()
                m.subscribers_dropped.labels(sub.kind, "slow").inc()
                if reader_task.done():
                    return Ended(reader_task.result() or "subscriber too slow", dropped=True)
                waited = f"subscriber too slow: one event waited {SEND_TIMEOUT_S:.0f} s to be sent"
                return Ended(waited, dropped=True)
            sending.result()
    finally:
        pending = [t for t in (getter, reader_task) if t is not None]
        for task in pending:
            task.cancel()
        # A reader cancelled inside a blocking XREAD can take its connection down
        # slowly; never hold the handler (and the gauge) for it.
        await asyncio.wait(pending, timeout=2)
        m.subscribers.labels(sub.kind).dec()


async def admit(
    websocket: WebSocket,
    stream_id: str,
    *,
    access_token: str | None,
    from_id: str | None,
    key: str,
    selector: Callable[[], Selector],
) -> Subscription | Refusal:
    """The WebSocket's subscription of the Redis stream ``key``, filtered by what
    ``selector`` makes of the parameters (raising FilterError for a bad one), or why it is
    refused."""
    state = state_of(websocket)
    try:
        authorize(state.tokens, websocket.headers.get("authorization"), access_token, "events:read")
    except AuthError as exc:
        return Refusal(exc.close_code, exc.detail)
    if state.table.get(stream_id) is None:
        return Refusal(4404, f"no stream {stream_id!r}"[:120])
    try:
        flt = selector()
    except FilterError as exc:
        return Refusal(4422, str(exc)[:120])
    try:
        after = await start_after(state.redis, key, from_id)
    except aioredis.RedisError:
        return Refusal(1013, "the event store is unavailable; try again")
    return Subscription(stream_id, after, flt, "websocket", key)


@router.websocket("/v1/streams/{stream_id}/events")
async def events_ws(
    websocket: WebSocket,
    stream_id: str,
    from_id: str | None = None,
    classes: str | None = None,
    min_score: str | None = None,
    zone: str | None = None,
    access_token: str | None = None,
) -> None:
    sub = await admit(
        websocket,
        stream_id,
        access_token=access_token,
        from_id=from_id,
        key=masks_key(stream_id),
        selector=lambda: event_filter(from_id, classes, min_score, zone),
    )
    await serve_websocket(websocket, sub)


async def serve_websocket(websocket: WebSocket, sub: Subscription | Refusal) -> None:
    """Complete the handshake of an admitted subscription and deliver it, or close with the
    refusal's code and reason."""
    # Admission decided everything before the handshake completes, where reading starts
    # included: once the client's connect returns, no event can slip in unseen. Refusals
    # are sent after accepting: a close before it reaches the client as a bare HTTP 403,
    # without the close code and reason that tell it what was wrong.
    await websocket.accept()
    if isinstance(sub, Refusal):
        await websocket.close(code=sub.code, reason=sub.reason)
        return

    async def send(entry: str, payload: bytes) -> None:
        await websocket.send_text('{"id":"' + entry + '","event":' + payload.decode() + "}")

    async def watch_close() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    closer = asyncio.create_task(watch_close())
    pumping: asyncio.Task[Ended] | None = None
    try:
        await websocket.send_text(json.dumps({"subscribed": sub.after}))
        pumping = asyncio.create_task(pump(state_of(websocket), sub, send))
        done, _ = await asyncio.wait({closer, pumping}, return_when=asyncio.FIRST_COMPLETED)
        if pumping in done and not closer.done():
            ended = Ended("ended")
            with contextlib.suppress(Exception):
                ended = pumping.result()
            await websocket.close(code=ended.close_code, reason=ended.reason[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in (closer, pumping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


@router.get(
    "/v1/streams/{stream_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        404: {"model": Problem},
        503: {"model": Problem},
    },
)
async def events_sse(
    stream_id: str,
    state: State,
    _: Annotated[str, Depends(reader)],
    from_id: str | None = None,
    classes: str | None = None,
    min_score: Annotated[str | None, Query(description="a number in [0, 1]")] = None,
    zone: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    start = last_event_id or from_id
    return await sse_response(
        state,
        stream_id,
        start,
        masks_key(stream_id),
        lambda: event_filter(start, classes, min_score, zone),
    )


async def sse_response(
    state: ApiState,
    stream_id: str,
    start: str | None,
    key: str,
    selector: Callable[[], Selector],
) -> StreamingResponse:
    """The SSE response of a subscription of the Redis stream ``key`` from ``start``
    (``from_id`` or ``Last-Event-ID``): 404 for an unknown stream, 422 naming a bad
    parameter (``selector`` raises FilterError), 503 when Redis does not answer."""
    found(state, stream_id)
    try:
        flt = selector()
    except FilterError as exc:
        raise HTTPException(422, [{"loc": ["query", exc.field], "msg": str(exc)}]) from None
    try:  # before the response starts: the client's first line means it is reading
        after = await start_after(state.redis, key, start)
    except aioredis.RedisError:
        raise HTTPException(503, "the event store is unavailable; try again") from None
    return StreamingResponse(
        sse_body(state, Subscription(stream_id, after, flt, "sse", key)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


ANALYTICS_DOC = {
    "type": "event types, comma-separated: " + ", ".join(ANALYTICS_TYPES),
    "zone": "zone names, comma-separated (naming zones or lines: only their events)",
    "line": "line names, comma-separated",
    "label": "labels of the tracks, comma-separated",
}


@router.websocket("/v1/streams/{stream_id}/analytics/events")
async def analytics_ws(
    websocket: WebSocket,
    stream_id: str,
    from_id: str | None = None,
    type: str | None = None,
    zone: str | None = None,
    line: str | None = None,
    label: str | None = None,
    access_token: str | None = None,
) -> None:
    sub = await admit(
        websocket,
        stream_id,
        access_token=access_token,
        from_id=from_id,
        key=analytics_key(stream_id),
        selector=lambda: analytics_filter(from_id, type, zone, line, label),
    )
    await serve_websocket(websocket, sub)


@router.get(
    "/v1/streams/{stream_id}/analytics/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        404: {"model": Problem},
        503: {"model": Problem},
    },
)
async def analytics_sse(
    stream_id: str,
    state: State,
    _: Annotated[str, Depends(reader)],
    from_id: str | None = None,
    type: Annotated[str | None, Query(description=ANALYTICS_DOC["type"])] = None,
    zone: Annotated[str | None, Query(description=ANALYTICS_DOC["zone"])] = None,
    line: Annotated[str | None, Query(description=ANALYTICS_DOC["line"])] = None,
    label: Annotated[str | None, Query(description=ANALYTICS_DOC["label"])] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """The stream's zone and line events (``segstream:analytics:<id>``) as Server-Sent
    Events, as ``/v1/streams/{id}/events`` serves mask events."""
    start = last_event_id or from_id
    return await sse_response(
        state,
        stream_id,
        start,
        analytics_key(stream_id),
        lambda: analytics_filter(start, type, zone, line, label),
    )


async def sse_body(state: ApiState, sub: Subscription) -> AsyncIterator[bytes]:
    """``: subscribed <id>``, then ``id:``/``data:`` per event, a keep-alive comment after
    15 s without one, and ``event: close`` with the reason when the subscription ends."""
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    async def send(entry: str, payload: bytes) -> None:
        await chunks.put(b"id: " + entry.encode() + b"\ndata: " + payload + b"\n\n")

    async def run() -> None:
        ended = await pump(state, sub, send)
        with contextlib.suppress(asyncio.QueueFull):
            chunks.put_nowait(f"event: close\ndata: {json.dumps(ended.reason)}\n\n".encode())

    task = asyncio.create_task(run())
    try:
        yield f": subscribed {sub.after}\n\n".encode()
        idle = 0
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.get(), timeout=1)
            except TimeoutError:
                if task.done():
                    return
                idle += 1
                if idle >= 15:
                    idle = 0
                    yield b": keep-alive\n\n"
                continue
            idle = 0
            yield chunk
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
