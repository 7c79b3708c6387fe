"""Pure parts of the API: event filters, token matching and the tokens file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from services.api.auth import TokenConfigError, Tokens, load_tokens
from services.api.filters import EventFilter, FilterError
from services.common.events import Instance, MaskEvent
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
