"""Pure parts of the API: event filters, token matching, the one authorisation check both
transports use, and the tokens file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from services.api.auth import (
    AuthError,
    Principal,
    TokenConfigError,
    Tokens,
    authorize,
    bearer,
    load_tokens,
)
from services.api.filters import EventFilter, FilterError
from services.api.subscriptions import event_filter, filtered
from services.common.events import Instance, MaskEvent, encode_event
from services.common.settings import ApiToken, Settings


def inst(label: str, score: float, x0: int, x1: int) -> Instance:
    mask = np.zeros((20, 30), np.uint8)
    mask[2:18, x0:x1] = 1
    counts = mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
    return Instance(label, 0, score, (x0, 2, x1, 18), (20, 30), counts)


EVENT = MaskEvent(
    "cam",
    1,
    0.2,
    1.0,
    1.1,
    "m",
    30,
    20,
    (inst("disc", 0.9, 0, 8), inst("star", 0.4, 20, 30)),
)


def test_no_filter_passes_everything_including_empty_events() -> None:
    empty = MaskEvent("cam", 2, 0.4, 1.0, 1.1, "m", 30, 20, ())
    flt = EventFilter.parse(None, None, None)
    assert not flt.active and flt.apply(EVENT) is EVENT and flt.apply(empty) is empty


def test_classes_score_and_zone() -> None:
    assert [i.label for i in EventFilter.parse("star", None, None).apply(EVENT).instances] == [
        "star"
    ]
    assert [i.label for i in EventFilter.parse(None, 0.5, None).apply(EVENT).instances] == ["disc"]
    left = EventFilter.parse(None, None, "0,0,10,0,10,20,0,20")
    assert [i.label for i in left.apply(EVENT).instances] == ["disc"]
    touching = EventFilter.parse(None, None, "7,0,12,0,12,20,7,20")  # overlaps disc's edge
    assert [i.label for i in touching.apply(EVENT).instances] == ["disc"]
    assert EventFilter.parse(None, None, "10,0,19,0,19,20,10,20").apply(EVENT) is None
    assert EventFilter.parse("ring", None, None).apply(EVENT) is None


@pytest.mark.parametrize(
    ("min_score", "zone", "error"),
    [(1.5, None, "min_score"), (None, "1,2,x", "zone"), (None, "1,2,3,4", "3 points")],
)
def test_bad_filters_are_named(min_score: float | None, zone: str | None, error: str) -> None:
    with pytest.raises(FilterError, match=error):
        EventFilter.parse(None, min_score, zone)


def test_tokens_match_by_value_with_scopes() -> None:
    tokens = Tokens(
        [
            ApiToken(name="ops", token="a" * 20),  # type: ignore[arg-type]
            ApiToken(name="viewer", token="b" * 20, scopes=("events:read",)),  # type: ignore[arg-type]
        ]
    )
    assert tokens.match("a" * 20) == ("ops", {"streams:write", "events:read"})
    assert tokens.match("b" * 20) == ("viewer", {"events:read"})
    assert tokens.match("a" * 19) is None and tokens.match("") is None
    with pytest.raises(ValueError, match="unknown scopes"):
        ApiToken(name="x", token="c" * 20, scopes=("admin",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 16"):
        ApiToken(name="x", token="short")  # type: ignore[arg-type]


def test_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{"name": "f", "token": "d" * 20, "scopes": ["events:read"]}]))
    tokens = load_tokens(Settings(api_tokens_file=path))
    assert [t.name for t in tokens] == ["f"]
    path.write_text(json.dumps([{"name": "f", "token": "short"}]))
    with pytest.raises(TokenConfigError, match=r"tokens.json: \[0.token\]"):
        load_tokens(Settings(api_tokens_file=path))
    with pytest.raises(TokenConfigError, match="No such file"):
        load_tokens(Settings(api_tokens_file=tmp_path / "missing.json"))
    path.write_text("{not json")
    with pytest.raises(TokenConfigError, match="not JSON"):
        load_tokens(Settings(api_tokens_file=path))


TOKENS = Tokens(
    [
        ApiToken(name="ops", token="a" * 20),  # type: ignore[arg-type]
        ApiToken(name="viewer", token="b" * 20, scopes=("events:read",)),  # type: ignore[arg-type]
    ]
)


def test_bearer_header_first_then_query() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer(None, "q") == "q" and bearer("Bearer h", "q") == "h"
    assert bearer("Basic eDp5", "q") is None and bearer("Bearer", "q") is None
    assert bearer(None) is None


def test_authorize_admits_a_valid_token_with_the_scope() -> None:
    assert authorize(TOKENS, "Bearer " + "b" * 20, None, "events:read") == Principal(
        "viewer", frozenset({"events:read"})
    )
    assert authorize(TOKENS, None, "a" * 20, "streams:write").name == "ops"
    assert authorize(TOKENS, "Bearer " + "b" * 20, None, None).name == "viewer"


@pytest.mark.parametrize(
    ("header", "query", "scope", "status", "detail"),
    [
        (None, None, None, 401, "bearer token is required"),
        ("Basic eDp5", "a" * 20, None, 401, "bearer token is required"),
        ("Bearer " + "c" * 20, None, None, 401, "not valid"),
        (None, "a" * 19, "events:read", 401, "not valid"),
        ("Bearer " + "b" * 20, None, "streams:write", 403, "lacks the scope streams:write"),
    ],
)
def test_authorize_refusals_map_to_status_and_close_code(
    header: str | None, query: str | None, scope: str | None, status: int, detail: str
) -> None:
    with pytest.raises(AuthError, match=detail) as err:
        authorize(TOKENS, header, query, scope)
    assert err.value.status == status and err.value.close_code == 4000 + status


def test_subscription_parameters() -> None:
    assert not event_filter("1764000000123-42", None, None, None).active
    assert event_filter(None, "disc", 0.5, None).classes == frozenset({"disc"})
    with pytest.raises(FilterError, match="from_id"):
        event_filter("latest", None, None, None)
    with pytest.raises(FilterError, match="zone"):
        event_filter(None, None, None, "1,2")
    raw = encode_event(EVENT)
    assert filtered(EventFilter(), raw) is raw
    assert filtered(EventFilter.parse("ring", None, None), raw) is None
    assert filtered(EventFilter.parse("disc", None, None), b"not json") is None
    kept = filtered(EventFilter.parse("disc", None, None), raw)
    assert kept is not None and b'"star"' not in kept and b'"disc"' in kept
