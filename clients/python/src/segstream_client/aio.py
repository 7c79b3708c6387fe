"""The asyncio client: httpx's AsyncClient for the REST API, websockets' asyncio client for
subscriptions; the same methods, answers and resume semantics as :class:`~.client.Client`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from segstream_client import _protocol as p
from segstream_client._protocol import Received
from segstream_client.events import AnalyticsEvent, MaskEvent

E = TypeVar("E")


class AsyncClient:
    """The API at ``url`` with a bearer ``token``; ``async with`` closes its connections."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, call: p.Call) -> Any:
        response = await self.http.request(call.method, call.path, json=call.body)
        return p.result(call, response)

    # streams ------------------------------------------------------------------------------
    async def add(
        self, url: str, model: str, *, id: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """Register a camera; ``options``: fps, latency_budget_ms, max_side, realtime, loop."""
        result: dict[str, Any] = await self._call(p.add_call(url, model, id, options))
        return result

    async def list_streams(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call(p.Call("GET", "/v1/streams"))
        return result

    async def get(self, stream_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(p.Call("GET", p.stream_path(stream_id)))
        return result

    async def update(self, stream_id: str, **changes: Any) -> dict[str, Any]:
        call = p.Call("PATCH", p.stream_path(stream_id), changes)
        result: dict[str, Any] = await self._call(call)
        return result

    async def delete(self, stream_id: str) -> None:
        await self._call(p.Call("DELETE", p.stream_path(stream_id)))

    async def health(self, stream_id: str) -> dict[str, Any] | None:
        """The stream's health (state, reason, reconnects, fps, ...), None before any."""
        health: dict[str, Any] | None = (await self.get(stream_id))["health"]
        return health

    async def analytics(self, stream_id: str) -> dict[str, Any]:
        """The stream's zone and line counts: ``{"zones": {name: {"occupancy", "entries",
        "exits"}}, "lines": {name: {"forward", "backward"}}}``."""
        result: dict[str, Any] = await self._call(
            p.Call("GET", p.stream_path(stream_id, "analytics"))
        )
        return result

    async def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call(p.Call("GET", "/v1/models"))
        return result

    async def frame(self, stream_id: str, event_id: str) -> bytes | None:
        """The JPEG frame of an event, when the segment workers keep frames; else None."""
        path = p.stream_path(stream_id, "frames", event_id)
        data: bytes | None = await self._call(p.Call("GET", path, missing=True))
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
    ) -> AsyncGenerator[Received[MaskEvent], None]:
        """``async for item in client.subscribe(...)``: as :meth:`Client.subscribe`. Leaving
        the loop early closes the connection when the generator is closed
        (``contextlib.aclosing``, or when it is collected)."""
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
    ) -> AsyncGenerator[Received[AnalyticsEvent], None]:
        """``async for item in client.subscribe_analytics(...)``: as
        :meth:`Client.subscribe_analytics`."""
        cursor = p.analytics_cursor(stream_id, from_id, types, zones, lines, labels)
        return self.follow(cursor, max_backoff_s=max_backoff_s, receive_timeout_s=receive_timeout_s)

    async def follow(
        self,
        cursor: p.Cursor[E],
        *,
        max_backoff_s: float = 10.0,
        receive_timeout_s: float | None = None,
    ) -> AsyncGenerator[Received[E], None]:
        """The events of any subscription ``cursor`` describes, as :meth:`Client.follow`."""
        backoff = p.Backoff(max_backoff_s)
        base = p.websocket_base(self.url)
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            try:
                async with connect(
                    cursor.url(base), additional_headers=headers, open_timeout=10
                ) as ws:
                    while True:
                        try:
                            async with asyncio.timeout(receive_timeout_s):
                                text = await ws.recv()
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
            await asyncio.sleep(backoff.next_delay())
