"""The blocking client: httpx for the REST API, websockets' sync client for subscriptions."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from segstream_client import _protocol as p
from segstream_client._protocol import Received
from segstream_client.events import AnalyticsEvent, MaskEvent

E = TypeVar("E")


class Client:
    """The API at ``url`` with a bearer ``token``; a context manager that closes its
    connections. Stream methods return the API's JSON (dicts), events are typed."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, call: p.Call) -> Any:
        response = self.http.request(call.method, call.path, json=call.body)
        return p.result(call, response)

    # streams ------------------------------------------------------------------------------
    def add(self, url: str, model: str, *, id: str | None = None, **options: Any) -> dict[str, Any]:
        """Register a camera; ``options``: fps, latency_budget_ms, max_side, realtime, loop."""
        result: dict[str, Any] = self._call(p.add_call(url, model, id, options))
        return result

    def list_streams(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(p.Call("GET", "/v1/streams"))
        return result

    def get(self, stream_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(p.Call("GET", p.stream_path(stream_id)))
        return result

    def update(self, stream_id: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(p.Call("PATCH", p.stream_path(stream_id), changes))
        return result

    def delete(self, stream_id: str) -> None:
        self._call(p.Call("DELETE", p.stream_path(stream_id)))

    def health(self, stream_id: str) -> dict[str, Any] | None:
        """The stream's health (state, reason, reconnects, fps, ...), None before any."""
        health: dict[str, Any] | None = self.get(stream_id)["health"]
        return health

    def analytics(self, stream_id: str) -> dict[str, Any]:
        """The stream's zone and line counts: ``{"zones": {name: {"occupancy", "entries",
        "exits"}}, "lines": {name: {"forward", "backward"}}}``."""
        result: dict[str, Any] = self._call(p.Call("GET", p.stream_path(stream_id, "analytics")))
        return result

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(p.Call("GET", "/v1/models"))
        return result

    def frame(self, stream_id: str, event_id: str) -> bytes | None:
        """The JPEG frame of an event, when the segment workers keep frames; else None."""
        path = p.stream_path(stream_id, "frames", event_id)
        data: bytes | None = self._call(p.Call("GET", path, missing=True))
        return data

    # events -------------------------------------------------------------------------------
    def subscribe(
        self,
        stream_id: str,
        from_id: str | None = None,
        classes: Sequence[str] | None = None,
        min_score: float | None = None,
        zone: Sequence[float] | None = None,
        *,
        max_backoff_s: float = 10.0,
        receive_timeout_s: float | None = None,
    ) -> Iterator[Received[MaskEvent]]:
        """The stream's mask events after ``from_id`` (exclusive; None: from the moment of
        the first connection, made on the first ``next``), filtered on the server
        (``classes``, ``min_score``, ``zone``: a polygon x1,y1,x2,y2,... in frame pixels),
        reconnecting and resuming by itself. ``receive_timeout_s``: stop when no event comes
        for that long (None: wait for ever). Raises ApiError for what retrying will not fix,
        DecodeError for an event this codec cannot read."""
        cursor = p.mask_cursor(stream_id, from_id, classes, min_score, zone)
        return self.follow(cursor, max_backoff_s=max_backoff_s, receive_timeout_s=receive_timeout_s)

    def subscribe_analytics(
        self,
        stream_id: str,
        from_id: str | None = None,
        types: Sequence[str] | None = None,
        zones: Sequence[str] | None = None,
        lines: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        *,
        max_backoff_s: float = 10.0,
        receive_timeout_s: float | None = None,
    ) -> Iterator[Received[AnalyticsEvent]]:
        """The stream's zone and line events after ``from_id``, as :meth:`subscribe` gives
        its mask events: of these ``types`` (``zone.enter``, ``zone.exit``, ``zone.loiter``,
        ``line.cross``), of these ``zones`` or ``lines`` (naming any: only their events), of
        tracks with these ``labels``; None: any."""
        cursor = p.analytics_cursor(stream_id, from_id, types, zones, lines, labels)
        return self.follow(cursor, max_backoff_s=max_backoff_s, receive_timeout_s=receive_timeout_s)

    def follow(
        self,
        cursor: p.Cursor[E],
        *,
        max_backoff_s: float = 10.0,
        receive_timeout_s: float | None = None,
    ) -> Iterator[Received[E]]:
        """The events of any subscription ``cursor`` describes (its path, query, decoder),
        reconnecting with capped backoff and resuming after the last id it saw."""
        backoff = p.Backoff(max_backoff_s)
        base = p.websocket_base(self.url)
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            try:
                with connect(cursor.url(base), additional_headers=headers, open_timeout=10) as ws:
                    while True:
                        try:
                            text = ws.recv(timeout=receive_timeout_s)
                        except TimeoutError:
                            return
                        item = cursor.receive(text)
                        if item is not None:
                            backoff.reset()
                            yield item
            except ConnectionClosed as exc:
                if exc.rcvd is not None and (error := p.refusal(exc.rcvd.code, exc.rcvd.reason)):
                    raise error from None
            except InvalidStatus as exc:
                if error := p.handshake_refusal(exc.response.status_code):
                    raise error from None
            except (OSError, WebSocketException):  # refused, reset, timed out opening, ...
                pass
            time.sleep(backoff.next_delay())
