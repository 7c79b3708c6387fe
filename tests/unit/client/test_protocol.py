"""The subscription state both clients share: where a cursor resumes, how messages read,
which closes are errors, and the requests' answers."""

from __future__ import annotations

import json

import httpx
import pytest

from segstream_client import _protocol as p
from segstream_client.events import DecodeError, Instance, MaskEvent, mask_event_of


def _event(seq: int) -> dict[str, object]:
    inst = Instance("person", 0, 0.9, (1, 2, 3, 4), (24, 32), "o`1", track_id=seq + 1)
    return MaskEvent("door", seq, seq / 5, 100.0, 100.1, "m", 32, 24, (inst,)).to_json()


def _cursor(last: str | None = None) -> p.Cursor[MaskEvent]:
    path = p.stream_path("door", "events")
    return p.Cursor(path, mask_event_of, p.mask_filters(["person", "car"], 0.5, None), last)


def test_cursor_resumes_after_the_greeting_then_after_each_event() -> None:
    cursor = _cursor()
    first = cursor.url("ws://api:8080")
    assert first.startswith("ws://api:8080/v1/streams/door/events?")
    assert "from_id" not in first and "classes=person%2Ccar" in first and "min_score=0.5" in first
    assert cursor.receive(json.dumps({"subscribed": "100000-0"})) is None
    assert cursor.url("ws://api").endswith("&from_id=100000-0")
    item = cursor.receive(json.dumps({"id": "100000-1", "event": _event(1)}))
    assert item is not None and item.id == "100000-1"
    assert item.event.seq == 1 and item.event.instances[0].track_id == 2
    assert cursor.last == "100000-1"
    assert cursor.url("ws://api").endswith("&from_id=100000-1")


def test_a_given_from_id_is_where_the_first_connection_starts() -> None:
    assert _cursor("5-0").url("wss://x").endswith("from_id=5-0")


def test_a_bad_event_is_named_by_its_id_and_the_cursor_stays() -> None:
    cursor = _cursor("1-0")
    bad = _event(2)
    bad["seq"] = "two"
    with pytest.raises(DecodeError, match=r"^event 1-2: event: 'seq' must be"):
        cursor.receive(json.dumps({"id": "1-2", "event": bad}))
    assert cursor.last == "1-0"
    with pytest.raises(DecodeError, match="without its event id"):
        cursor.receive(json.dumps({"event": _event(3)}))
    with pytest.raises(DecodeError, match="not JSON"):
        cursor.receive("{")


def test_which_closes_are_errors() -> None:
    for code in (4401, 4403, 4404, 4422):
        error = p.refusal(code, "")
        assert error is not None and error.status == code and str(error.detail)
    assert p.refusal(4404, "no stream 'x'") is not None
    assert str(p.refusal(4404, "no stream 'x'")) == "4404: no stream 'x'"
    for code in (1000, 1006, 1011, 1013):  # ended, dropped, server error, try again
        assert p.refusal(code, "") is None
    assert p.handshake_refusal(403) is not None and p.handshake_refusal(503) is None


def test_websocket_base() -> None:
    assert p.websocket_base("http://h:1") == "ws://h:1"
    assert p.websocket_base("https://h") == "wss://h"


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = p.Backoff(max_s=1.0)
    delays = [backoff.next_delay() for _ in range(6)]
    assert 0.125 <= delays[0] <= 0.25 and all(0.5 <= d <= 1.0 for d in delays[3:])
    backoff.reset()
    assert backoff.next_delay() <= 0.25


def test_results_of_calls() -> None:
    call = p.Call("GET", "/v1/streams/x")
    ok = httpx.Response(200, json={"id": "x"})
    assert p.result(call, ok) == {"id": "x"}
    assert p.result(call, httpx.Response(204)) is None
    assert p.result(call, httpx.Response(200, content=b"\xff\xd8")) == b"\xff\xd8"
    with pytest.raises(p.ApiError) as err:
        p.result(call, httpx.Response(422, json={"detail": [{"loc": ["body", "fps"]}]}))
    assert err.value.status == 422 and err.value.detail == [{"loc": ["body", "fps"]}]
    with pytest.raises(p.ApiError, match="404: gone"):
        p.result(call, httpx.Response(404, text="gone"))
    assert p.result(p.Call("GET", "/f", missing=True), httpx.Response(404)) is None
    assert p.add_call("rtsp://c", "m", None, {"fps": 2}).body == {
        "url": "rtsp://c", "model": "m", "fps": 2
    }  # fmt: skip
