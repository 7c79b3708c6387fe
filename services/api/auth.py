"""Bearer tokens with scopes (``streams:write``, ``events:read``): from the settings and an
optional JSON file (a mounted secret), compared in constant time."""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from services.common.settings import ApiToken, Settings

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
