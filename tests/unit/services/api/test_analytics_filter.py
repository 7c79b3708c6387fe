"""Filters of analytics subscriptions (types, zone and line names, labels), and their
parameters answered by the routes with the parameter's name: SSE 422, WebSocket close 4422."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.api.filters import AnalyticsFilter, FilterError
from services.api.subscriptions import analytics_filter
from services.common.events import AnalyticsEvent, encode_analytics
from tests.unit.services.api.test_errors import AUTH, DOOR, TOKEN, MemoryTable, served

FRAME = {"stream_id": "door", "seq": 1, "pts": 0.2, "captured_at": 1.0, "published_at": 1.1}


def raw(kind: str, name: str, label: str = "person") -> bytes:
    body: dict[str, object] = {"type": kind, "track_id": 3, "label": label, "class_id": 0}
    if kind == "line.cross":
        body |= {"line": name, "direction": "forward", "count": 1}
    else:
        body |= {"zone": name, "occupancy": 1}
        body |= {"count": 1} if kind == "zone.enter" else {"dwell_s": 2.0}
    return encode_analytics(AnalyticsEvent.of(body, **FRAME))  # type: ignore[arg-type]


EVENTS = {
    "enter-door": raw("zone.enter", "door"),
    "exit-door-car": raw("zone.exit", "door", "car"),
    "loiter-lot": raw("zone.loiter", "lot"),
    "cross-gate": raw("line.cross", "gate"),
    "cross-back-car": raw("line.cross", "back", "car"),
}


def passing(flt: AnalyticsFilter) -> set[str]:
    return {name for name, event in EVENTS.items() if flt.select(event) is not None}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, set(EVENTS)),
        ({"types": "zone.enter,zone.exit"}, {"enter-door", "exit-door-car"}),
        ({"types": "line.cross"}, {"cross-gate", "cross-back-car"}),
        ({"zones": "door"}, {"enter-door", "exit-door-car"}),
        ({"lines": "gate"}, {"cross-gate"}),
        ({"zones": "lot", "lines": "back"}, {"loiter-lot", "cross-back-car"}),
        ({"labels": "car"}, {"exit-door-car", "cross-back-car"}),
        ({"types": "zone.exit,line.cross", "labels": "car", "zones": "door"}, {"exit-door-car"}),
    ],
)
def test_filters_pass_what_they_name(query: dict[str, str], expected: set[str]) -> None:
    args = {"types": None, "zones": None, "lines": None, "labels": None, **query}
    flt = AnalyticsFilter.parse(**args)
    assert passing(flt) == expected
    for event in EVENTS.values():  # an event passes as it is
        assert flt.select(event) in (event, None)


def test_an_event_that_does_not_decode_is_sent_only_without_filters() -> None:
    assert AnalyticsFilter().select(b"junk") == b"junk"
    assert AnalyticsFilter.parse("zone.enter", None, None, None).select(b"junk") is None


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("latest", None, None, None, None), "from_id"),
        ((None, "zone.wave", None, None, None), "type"),
        ((None, None, "a b", None, None), "zone"),
        ((None, None, None, "x" * 65, None), "line"),
    ],
)
def test_bad_parameters_are_named(args: tuple[str | None, ...], field: str) -> None:
    with pytest.raises(FilterError) as err:
        analytics_filter(*args)
    assert err.value.field == field


@pytest.fixture
def client() -> Iterator[TestClient]:
    with served(MemoryTable(DOOR)) as c:
        yield c


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("type=zone.wave", "type"),
        ("zone=a%20b", "zone"),
        ("line=%2F", "line"),
        ("from_id=x", "from_id"),
    ],
)
def test_sse_parameters_answer_422_naming_the_field(
    client: TestClient, query: str, field: str
) -> None:
    response = client.get(f"/v1/streams/door/analytics/events?{query}", headers=AUTH)
    assert response.status_code == 422, response.text
    assert json.loads(response.text)["detail"][0]["loc"] == ["query", field]


def test_websocket_parameters_close_4422_and_an_unknown_stream_4404(client: TestClient) -> None:
    url = f"/v1/streams/door/analytics/events?type=zone.wave&access_token={TOKEN}"
    with client.websocket_connect(url) as socket, pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_text()
    assert closed.value.code == 4422 and closed.value.reason.startswith("type:")
    url = f"/v1/streams/nope/analytics/events?access_token={TOKEN}"
    with client.websocket_connect(url) as socket, pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_text()
    assert closed.value.code == 4404
    assert client.get("/v1/streams/nope/analytics/events", headers=AUTH).status_code == 404
    assert client.get("/v1/streams/door/analytics/events").status_code == 401
