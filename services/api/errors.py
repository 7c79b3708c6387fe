"""How the API answers what goes wrong: validation errors (422) and backing services that do
not answer (503 with ``Retry-After``).

A 422 body is ``{"detail": [{"type", "loc", "msg", "input"?, "ctx"?}, ...]}``, FastAPI's shape,
with ``loc`` naming the field (``["body", "fps"]``, ``["query", "min_score"]``). ``input`` and
``ctx`` are shown only where JSON can carry them: a NaN or an infinity (``1e309`` parses as
one) is left out, never echoed into a body that could not be written.

A 503 body is ``{"detail": "<which store> is unavailable (<error>); ..."}``, saying whether a
write was made; clients retry after ``Retry-After`` seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

RETRY_AFTER_S = 5  # what a 503 tells a client to wait
STORE_TIMEOUT_S = 5.0  # longest wait for one Redis call of a request

T = TypeVar("T")


class Unavailable(Exception):
    """A backing service (Redis, the registry topic) did not answer: 503, ``detail`` says
    which and whether anything was changed."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


async def from_store(call: Awaitable[T], done: str = "") -> T:
    """The result of one Redis call; raises :class:`Unavailable` when Redis fails or takes
    over ``STORE_TIMEOUT_S`` (``done`` is appended to the reason: what was or was not done)."""
    try:
        return await asyncio.wait_for(call, STORE_TIMEOUT_S)
    except (aioredis.RedisError, OSError, TimeoutError) as exc:
        reason = f"the status store (Redis) is unavailable ({type(exc).__name__})"
        raise Unavailable(f"{reason}{'; ' + done if done else ''}; try again") from None


def _carried(value: Any) -> Any | None:
    """``value`` as JSON can carry it (finite numbers only), or None when it cannot."""
    try:
        encoded = jsonable_encoder(value)
        json.dumps(encoded, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return encoded


def public_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """Validation errors as a 422 body shows them: ``type``, ``loc`` and ``msg`` always,
    ``input`` and ``ctx`` only where JSON can carry them."""
    shown: list[dict[str, Any]] = []
    for error in errors:
        item: dict[str, Any] = {
            "type": str(error.get("type", "value_error")),
            "loc": [p if isinstance(p, int) else str(p) for p in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
        }
        for key in ("input", "ctx"):
            if key in error:
                value = _carried(error[key])
                if value is not None:
                    item[key] = value
        shown.append(item)
    return shown


async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request FastAPI could not validate: 422 naming the fields."""
    return JSONResponse({"detail": public_errors(exc.errors())}, status_code=422)


async def invalid(_request: Request, exc: ValidationError) -> JSONResponse:
    """A model built inside a route that does not validate: 422 naming the fields."""
    return JSONResponse({"detail": public_errors(exc.errors(include_url=False))}, status_code=422)


async def unavailable(_request: Request, exc: Unavailable) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.detail},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def store_failed(request: Request, exc: aioredis.RedisError) -> JSONResponse:
    """A Redis failure no route turned into :class:`Unavailable` (reads only: writes check
    Redis first): the same 503."""
    return await unavailable(
        request,
        Unavailable(f"the status store (Redis) is unavailable ({type(exc).__name__}); try again"),
    )


def install(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(ValidationError, invalid)  # type: ignore[arg-type]
    app.add_exception_handler(Unavailable, unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(aioredis.RedisError, store_failed)  # type: ignore[arg-type]
