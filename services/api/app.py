"""The REST API and event subscriptions (FastAPI, served by uvicorn): the app's wiring.

Streams: ``POST/GET/PATCH/DELETE /v1/streams[/{id}]`` write and read the registry topic;
responses carry the stream's health from Redis and never its camera password
(``services/api/streams.py``). Events: ``/v1/streams/{id}/events`` as a WebSocket and as
Server-Sent Events, resumable from an event id, filtered on the server
(``services/api/subscriptions.py``). Every route needs a bearer token (``services/api/auth.py``)
except ``/healthz``, ``/readyz`` and ``/metrics``; subscriptions and the viewer also take it as
``access_token`` in the query (browsers cannot set headers on WebSocket or EventSource). What
the routes share is one :class:`ApiState` on ``app.state.api``, built by the lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import segcore
from services.api import errors, streams, subscriptions
from services.api.auth import Tokens, load_tokens, reader
from services.api.middleware import BodyLimit, count_requests
from services.api.models import Problem
from services.api.state import ApiState, State
from services.api.table import StreamTable
from services.common.destinations import DestinationPolicy
from services.common.metrics import PipelineMetrics
from services.common.redis import make_async_redis
from services.common.settings import Settings

VIEWER = Path(__file__).with_name("viewer.html")


def create_app(
    settings: Settings,
    *,
    table: StreamTable | None = None,
    metrics: PipelineMetrics | None = None,
) -> FastAPI:
    """The API of ``settings``' Kafka and Redis (a registry view is started unless given).
    Tokens are loaded here, so a bad tokens file fails before serving."""
    tokens = Tokens(load_tokens(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        view = table if table is not None else await asyncio.to_thread(StreamTable, settings)
        state = ApiState(
            settings=settings,
            table=view,
            # one quick retry (a pooled connection Redis dropped), then the request's 503
            redis=make_async_redis(settings, health_check_interval=10, retry=Retry(NoBackoff(), 1)),
            tokens=tokens,
            metrics=metrics or PipelineMetrics(),
            models=segcore.list_models(),
            destinations=DestinationPolicy.from_settings(settings),
        )
        app.state.api = state
        await asyncio.to_thread(view.wait_ready, 30.0)
        try:
            yield
        finally:
            await state.redis.aclose()
            if table is None:
                await asyncio.to_thread(view.close)

    app = FastAPI(
        title="segstream",
        version="1",
        description="Camera streams in, instance masks out.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.middleware("http")(count_requests)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["operations"])
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        tags=["operations"],
        responses={503: {"model": Problem}},
    )
    app.add_api_route(
        "/metrics", metrics_route, methods=["GET"], tags=["operations"], response_class=Response
    )
    app.include_router(streams.router)
    app.include_router(subscriptions.router)
    app.add_api_route(
        "/viewer", viewer, methods=["GET"], response_class=HTMLResponse, include_in_schema=False
    )
    errors.install(app)
    return app


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(state: State) -> JSONResponse:
    """200 while Redis answers a ping and the registry view is connected and caught up."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(state.redis.ping(), timeout=2)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    view = state.table
    checks["kafka"] = "ok" if view.connected and view.caught_up.is_set() else "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


async def metrics_route(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def viewer(_: Annotated[str, Depends(reader)]) -> HTMLResponse:
    return HTMLResponse(VIEWER.read_text(), headers={"Cache-Control": "no-store"})
