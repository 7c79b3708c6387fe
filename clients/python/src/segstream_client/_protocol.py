"""What the blocking and the asyncio clients share, free of I/O: the API's requests and how
their answers read (:class:`Call`, :func:`result`), and a subscription's state between
connections (:class:`Cursor`, :class:`Backoff`, :func:`refusal`), so both transports resume
the same way.

A subscription (``/v1/streams/{id}/events``; the API's services/api/subscriptions.py) is a
WebSocket whose first message is ``{"subscribed": id}``, the entry id the server reads after,
then ``{"id": entry id, "event": {...}}`` per event. The cursor remembers the last of these
ids; a new connection asks for ``from_id=<it>``, so a dropped connection neither loses nor
repeats an event, even one dropped before its first event. Close codes 4401/4403 (token,
scope), 4404 (stream) and 4422 (parameters), and a handshake refused with a 4xx, are errors
that retrying will not fix; everything else is retried with capped exponential backoff.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import quote, urlencode

import httpx

from segstream_client.events import (
    AnalyticsEvent,
    DecodeError,
    MaskEvent,
    analytics_event_of,
    mask_event_of,
)

E = TypeVar("E")

# Close codes the API uses for errors that retrying will not fix.
FATAL_CLOSES = {
    4401: "the token is not valid",
    4403: "the token lacks events:read",
    4404: "no such stream",
    4422: "bad subscription parameters",
}


class ApiError(RuntimeError):
    """The API refused a request: the HTTP status (or close code) and its detail."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Received(Generic[E]):
    """One event of a subscription and its id (pass it as ``from_id`` to resume after it)."""

    id: str
    event: E


# requests ---------------------------------------------------------------------------------
class Call(NamedTuple):
    """One request: method, path, JSON body; ``missing``: a 404 answers None."""

    method: str
    path: str
    body: Any = None
    missing: bool = False


def stream_path(stream_id: str, *rest: str) -> str:
    return "/".join(["/v1/streams", quote(stream_id, safe=""), *rest])


def add_call(url: str, model: str, stream_id: str | None, options: Mapping[str, Any]) -> Call:
    body = {"url": url, "model": model, **options}
    if stream_id is not None:
        body["id"] = stream_id
    return Call("POST", "/v1/streams", body)


def result(call: Call, response: httpx.Response) -> Any:
    """The answer of ``call``: parsed JSON, bytes, or None (204; 404 when ``missing``);
    raises ApiError on any other status >= 400."""
    status = response.status_code
    if status >= 400:
        if status == 404 and call.missing:
            return None
        try:
            answer = response.json()
            detail = answer.get("detail", response.text) if isinstance(answer, dict) else answer
        except ValueError:
            detail = response.text
        raise ApiError(status, detail)
    if status == 204:
        return None
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.content


# subscriptions ----------------------------------------------------------------------------
def mask_filters(
    classes: Sequence[str] | None, min_score: float | None, zone: Sequence[float] | None
) -> dict[str, str]:
    """The query of a mask-event subscription's server-side filters."""
    query: dict[str, str] = {}
    if classes:
        query["classes"] = ",".join(classes)
    if min_score is not None:
        query["min_score"] = str(min_score)
    if zone:
        query["zone"] = ",".join(str(v) for v in zone)
    return query


def analytics_filters(
    types: Sequence[str] | None,
    zones: Sequence[str] | None,
    lines: Sequence[str] | None,
    labels: Sequence[str] | None,
) -> dict[str, str]:
    """The query of an analytics subscription's server-side filters."""
    pairs = (("type", types), ("zone", zones), ("line", lines), ("label", labels))
    return {name: ",".join(values) for name, values in pairs if values}


def websocket_base(url: str) -> str:
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    return url


@dataclass
class Cursor(Generic[E]):
    """One subscription across its connections: where it is (``last``: the id it reads
    after, None until the server or the caller said) and how its events read (``decode``:
    parsed JSON -> typed event)."""

    path: str
    decode: Callable[[Any], E]
    query: dict[str, str] = field(default_factory=dict)
    last: str | None = None

    def url(self, base: str) -> str:
        """The WebSocket URL of the next connection (``base``: ws:// or wss://)."""
        query = dict(self.query)
        if self.last:
            query["from_id"] = self.last
        return base + self.path + ("?" + urlencode(query) if query else "")

    def receive(self, text: str | bytes) -> Received[E] | None:
        """One message: the event it carries (the cursor moves past it), or None for the
        ``subscribed`` greeting (the cursor moves to where the server reads from).
        A message that is not a valid event raises DecodeError naming its id."""
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise DecodeError(f"a subscription message that is not JSON: {exc}") from exc
        if not isinstance(message, dict):
            raise DecodeError("a subscription message must be a JSON object")
        if "subscribed" in message:
            self.last = str(message["subscribed"])
            return None
        entry = message.get("id")
        if not isinstance(entry, str):
            raise DecodeError("a subscription message without its event id")
        try:
            event = self.decode(message.get("event"))
        except DecodeError as exc:
            raise DecodeError(f"event {entry}: {exc}") from exc
        self.last = entry
        return Received(entry, event)


def mask_cursor(
    stream_id: str,
    from_id: str | None,
    classes: Sequence[str] | None,
    min_score: float | None,
    zone: Sequence[float] | None,
) -> Cursor[MaskEvent]:
    """A subscription to a stream's mask events (the blocking and asyncio clients' alike)."""
    return Cursor(
        stream_path(stream_id, "events"),
        mask_event_of,
        mask_filters(classes, min_score, zone),
        from_id,
    )


def analytics_cursor(
    stream_id: str,
    from_id: str | None,
    types: Sequence[str] | None,
    zones: Sequence[str] | None,
    lines: Sequence[str] | None,
    labels: Sequence[str] | None,
) -> Cursor[AnalyticsEvent]:
    """A subscription to a stream's analytics events (both clients alike)."""
    return Cursor(
        stream_path(stream_id, "analytics", "events"),
        analytics_event_of,
        analytics_filters(types, zones, lines, labels),
        from_id,
    )


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: 0.25 s, 0.5 s, ... up to ``max_s``."""

    max_s: float = 10.0
    attempt: int = 0

    def reset(self) -> None:
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.max_s, 0.25 * 2**self.attempt) * random.uniform(0.5, 1.0)
        self.attempt += 1
        return delay


def refusal(code: int, reason: str) -> ApiError | None:
    """The error of a close that retrying will not fix, None for one worth retrying."""
    if code in FATAL_CLOSES:
        return ApiError(code, reason or FATAL_CLOSES[code])
    return None


def handshake_refusal(status: int) -> ApiError | None:
    """The error of a refused handshake (a 4xx), None for one worth retrying (5xx)."""
    if 400 <= status < 500:
        return ApiError(status, "handshake refused")
    return None
