"""Bearer tokens with scopes (``streams:write``, ``events:read``): from the settings and an
optional JSON file (a mounted secret), compared in constant time.

:func:`authorize` is the one check every route makes: it parses the bearer token, matches
it and checks the scope, and returns the token's :class:`Principal` or raises
:class:`AuthError`. Each transport maps that error its own way: HTTP routes (through
:func:`require`) answer 401 or 403, the WebSocket closes with 4401 or 4403.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Header, HTTPException, Query, Request
from pydantic import TypeAdapter, ValidationError

from services.common.settings import ApiToken, Settings

if TYPE_CHECKING:
    from services.api.state import ApiState

_TOKENS = TypeAdapter(list[ApiToken])


class TokenConfigError(ValueError):
    """The tokens file is missing or malformed (the message names the file and the field)."""


def load_tokens(settings: Settings) -> list[ApiToken]:
    tokens = list(settings.api_tokens)
    path: Path | None = settings.api_tokens_file
    if path is not None:
        try:
            tokens += _TOKENS.validate_python(json.loads(path.read_text()))
        except OSError as exc:
            raise TokenConfigError(f"api_tokens_file {path}: {exc.strerror}") from None
        except ValueError as exc:
            if isinstance(exc, ValidationError):
                where = "; ".join(
                    f"[{'.'.join(map(str, e['loc']))}] {e['msg']}" for e in exc.errors()
                )
                raise TokenConfigError(f"api_tokens_file {path}: {where}") from None
            raise TokenConfigError(f"api_tokens_file {path}: not JSON") from None
    return tokens


class Tokens:
    def __init__(self, tokens: list[ApiToken]) -> None:
        self._tokens = [
            (t.name, t.token.get_secret_value().encode(), set(t.scopes)) for t in tokens
        ]

    def __len__(self) -> int:
        return len(self._tokens)

    def match(self, presented: str) -> tuple[str, set[str]] | None:
        """The (name, scopes) of the token presented, or None; every configured token is
        compared, in constant time, whatever matches."""
        given = presented.encode()
        found: tuple[str, set[str]] | None = None
        for name, secret, scopes in self._tokens:
            if hmac.compare_digest(given, secret) and found is None:
                found = (name, scopes)
        return found


@dataclass(frozen=True)
class Principal:
    """Whose token was presented (its configured name) and what it may do."""

    name: str
    scopes: frozenset[str]


class AuthError(Exception):
    """A request without a usable token: ``status`` 401 (no bearer token, or not a valid one)
    or 403 (valid, without the scope needed); ``detail`` says which."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    @property
    def close_code(self) -> int:
        """The WebSocket close code: 4401 or 4403."""
        return 4000 + self.status


def bearer(authorization: str | None, query_token: str | None = None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; without a header, the token
    given in the query (None when neither, or when the header is not a bearer token)."""
    if authorization:
        kind, _, value = authorization.partition(" ")
        if kind.lower() != "bearer" or not value:
            return None
        return value.strip()
    return query_token


def authorize(
    tokens: Tokens, authorization: str | None, query_token: str | None, scope: str | None
) -> Principal:
    """The principal of the token presented (header first, then ``query_token``), when it
    is valid and has ``scope`` (None: any valid token will do); raises :class:`AuthError`."""
    presented = bearer(authorization, query_token)
    if not presented:
        raise AuthError(401, "a bearer token is required")
    found = tokens.match(presented)
    if found is None:
        raise AuthError(401, "the token is not valid")
    name, scopes = found
    if scope is not None and scope not in scopes:
        raise AuthError(403, f"the token lacks the scope {scope}")
    return Principal(name, frozenset(scopes))


def require(scope: str | None, *, query: bool = False) -> Callable[..., str]:
    """An HTTP dependency that admits a token with ``scope`` (any valid token when None) and
    gives its name; with ``query``, the token may also come as ``access_token`` in the query
    (browsers cannot set headers on EventSource or on a page they open)."""

    def check(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        access_token: Annotated[str | None, Query(include_in_schema=False)] = None,
    ) -> str:
        state: ApiState = request.app.state.api
        try:
            principal = authorize(
                state.tokens, authorization, access_token if query else None, scope
            )
        except AuthError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            raise HTTPException(exc.status, exc.detail, headers=headers) from None
        return principal.name

    return check


any_token = require(None)
writer = require("streams:write")
reader = require("events:read", query=True)
