"""The API's middleware: a request-body limit, and request counts and durations."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse


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


async def count_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """``segstream_api_requests_total{method,route,status}`` and the request's duration,
    labelled by the route's template (``/v1/streams/{stream_id}``), never its values."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    path = getattr(route, "path", "unmatched")
    state = getattr(request.app.state, "api", None)
    if state is not None:
        m = state.metrics
        m.api_requests.labels(request.method, path, str(response.status_code)).inc()
        m.api_request_seconds.labels(request.method, path).observe(time.perf_counter() - started)
    return response
