"""The Python SDK of segstream's API.

```
from services.client import Client

client = Client("http://127.0.0.1:8080", token="...")
camera = client.add("rtsp://user:pass@10.0.0.5/stream1", model="yolact_r50", fps=5, id="door")
print(client.health("door"))
for item in client.subscribe("door", classes=["person"]):
    print(item.id, [(i.label, i.score) for i in item.event.instances])
```

``subscribe`` is an iterator over the stream's mask events that reconnects by itself (capped
exponential backoff) and resumes from the last event it yielded (before the first one, from
the id the server said it reads after: its ``{"subscribed": id}`` message), so a network blip
neither loses nor repeats an event. Errors the server reports (a bad token, an unknown
stream, a bad filter) raise :class:`ApiError` instead of being retried.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from services.common.events import MaskEvent, decode_event

# Close codes the API uses for errors that retrying will not fix.
_FATAL_CLOSES = {4401: "the token is not valid", 4403: "the token lacks events:read"}


class ApiError(RuntimeError):
    """The API refused a request: the HTTP status (or close code) and its detail."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Received:
    """One event of a subscription and its id (pass it as ``from_id`` to resume after it)."""

    id: str
    event: MaskEvent


class Client:
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

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        if response.status_code == 204:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    # streams ------------------------------------------------------------------------------
    def add(self, url: str, model: str, *, id: str | None = None, **options: Any) -> dict[str, Any]:
        """Register a camera; ``options``: fps, latency_budget_ms, max_side, realtime, loop."""
        body = {"url": url, "model": model, **options}
        if id is not None:
            body["id"] = id
        result: dict[str, Any] = self._call("POST", "/v1/streams", json=body)
        return result

    def list_streams(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/streams")
        return result

    def get(self, stream_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/streams/{stream_id}")
        return result

    def update(self, stream_id: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PATCH", f"/v1/streams/{stream_id}", json=changes)
        return result

    def delete(self, stream_id: str) -> None:
        self._call("DELETE", f"/v1/streams/{stream_id}")

    def health(self, stream_id: str) -> dict[str, Any] | None:
        """The stream's health (state, reason, reconnects, fps, ...), None before any."""
        health: dict[str, Any] | None = self.get(stream_id)["health"]
        return health

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/models")
        return result

    def frame(self, stream_id: str, event_id: str) -> bytes | None:
        """The JPEG frame of an event, when the segment workers keep frames; else None."""
        try:
            data: bytes = self._call("GET", f"/v1/streams/{stream_id}/frames/{event_id}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
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
    ) -> Iterator[Received]:
        """The stream's events from ``from_id`` (exclusive; when None, from the first
        connection, made on the first ``next``), filtered on the server, reconnecting and
        resuming by itself.
        ``receive_timeout_s``: stop when no event comes for that long (None: wait for ever)."""
        last = from_id
        attempt = 0
        base = self.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        while True:
            query: dict[str, str] = {}
            if last:
                query["from_id"] = last
            if classes:
                query["classes"] = ",".join(classes)
            if min_score is not None:
                query["min_score"] = str(min_score)
            if zone:
                query["zone"] = ",".join(str(v) for v in zone)
            url = f"{base}/v1/streams/{stream_id}/events"
            if query:
                url += "?" + str(httpx.QueryParams(query))
            try:
                with connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=10,
                ) as socket:
                    while True:
                        message = json.loads(socket.recv(timeout=receive_timeout_s))
                        if "subscribed" in message:
                            # The server reads after this id: resuming from it after a drop
                            # loses nothing, even before the first event arrived.
                            last = message["subscribed"]
                            continue
                        last = message["id"]
                        attempt = 0
                        yield Received(message["id"], decode_event(json.dumps(message["event"])))
            except TimeoutError:
                return
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                if code in _FATAL_CLOSES or code in (4404, 4422):
                    reason = exc.rcvd.reason if exc.rcvd is not None else ""
                    raise ApiError(code, reason or _FATAL_CLOSES.get(code, "")) from None
            except InvalidStatus as exc:
                if 400 <= exc.response.status_code < 500:
                    raise ApiError(exc.response.status_code, "handshake refused") from None
            except (OSError, WebSocketException):
                pass
            delay = min(max_backoff_s, 0.25 * 2**attempt) * random.uniform(0.5, 1.0)
            attempt += 1
            time.sleep(delay)


__all__ = ["ApiError", "Client", "Received"]
