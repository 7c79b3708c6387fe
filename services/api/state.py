"""The API's state: what every route reads, built once by the app's lifespan and kept as one
typed object on ``app.state.api``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends
from starlette.requests import HTTPConnection

from services.api.auth import Tokens
from services.api.table import StreamTable
from services.common.destinations import DestinationPolicy
from services.common.metrics import PipelineMetrics
from services.common.settings import Settings


@dataclass
class ApiState:
    """``table``: the registry view; ``redis``: the async client of statuses, events and
    frames; ``models``: the registered architectures' names, as ``segcore.list_models()``;
    ``destinations``: the policy sources are checked against at registration."""

    settings: Settings
    table: StreamTable
    redis: aioredis.Redis
    tokens: Tokens
    metrics: PipelineMetrics
    models: list[str]
    destinations: DestinationPolicy


def state_of(conn: HTTPConnection) -> ApiState:
    """The state of the app serving a request or a WebSocket (set while the app runs)."""
    state: ApiState = conn.app.state.api
    return state


State = Annotated[ApiState, Depends(state_of)]
