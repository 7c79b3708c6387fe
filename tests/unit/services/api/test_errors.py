"""The API's answers to what goes wrong, served in process: non-finite numbers in bodies and
query parameters (422 naming the field, never 500), subscription parameters validated by the
routes (WebSocket close 4422, SSE 422), and Redis down (503 with ``Retry-After``, nothing
written). The registry view is an in-memory stand-in; Redis is a port where nothing listens."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.api.app import create_app
from services.api.errors import RETRY_AFTER_S, public_errors
from services.api.subscriptions import Ended
from services.common.settings import ApiToken, Settings
from services.common.streams import StreamSpec
from services.infra.process import free_port

TOKEN = "w-" + "0123456789abcdef" * 2
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_BODY = {**AUTH, "Content-Type": "application/json"}
MODEL = "yolact_r18_demo"
DOOR = StreamSpec(id="door", url="rtsp://cam/door", model=MODEL, fps=4)


class MemoryTable:
    """The part of ``StreamTable`` the routes use, in memory (writes always succeed)."""

    def __init__(self, *specs: StreamSpec) -> None:
        self.specs = {s.id: s for s in specs}
        self.connected = True
        self.caught_up = threading.Event()
        self.caught_up.set()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return True

    def get(self, stream_id: str) -> StreamSpec | None:
        return self.specs.get(stream_id)

    def all(self) -> list[StreamSpec]:
        return sorted(self.specs.values(), key=lambda s: s.id)

    def put(self, spec: StreamSpec) -> None:
        self.specs[spec.id] = spec

    def delete(self, stream_id: str) -> None:
        self.specs.pop(stream_id, None)


@pytest.fixture
def table() -> MemoryTable:
    return MemoryTable(DOOR)


@contextlib.contextmanager
def served(table: MemoryTable) -> Iterator[TestClient]:
    """The app over ``table`` with its Redis on a free port: every Redis call is refused."""
    settings = Settings(
        redis_url=None,
        redis_port=free_port(),
        api_tokens=[ApiToken(name="op", token=TOKEN, scopes=("streams:write", "events:read"))],
    )
    with TestClient(create_app(settings, table=table), raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        yield c


@pytest.fixture
def client(table: MemoryTable) -> Iterator[TestClient]:
    with served(table) as c:
        yield c


def fields_of(response: object) -> list[object]:
    body = json.loads(response.text)  # type: ignore[attr-defined]
    return [error["loc"][-1] for error in body["detail"]]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/streams", f'{{"url":"rtsp://c/x","model":"{MODEL}","fps":1e309}}', "fps"),
        ("POST", "/v1/streams", f'{{"url":"rtsp://c/x","model":"{MODEL}","fps":NaN}}', "fps"),
        ("POST", "/v1/streams", f'{{"url":"rtsp://c/x","model":"{MODEL}","fps":-Infinity}}', "fps"),
        (
            "POST",
            "/v1/streams",
            f'{{"url":"rtsp://c/x","model":"{MODEL}","latency_budget_ms":1e400}}',
            "latency_budget_ms",
        ),
        (
            "POST",
            "/v1/streams",
            f'{{"url":"rtsp://c/x","model":"{MODEL}","max_side":NaN}}',
            "max_side",
        ),
        ("PATCH", "/v1/streams/door", '{"fps":Infinity}', "fps"),
        ("PATCH", "/v1/streams/door", '{"fps":NaN}', "fps"),
        ("PATCH", "/v1/streams/door", '{"latency_budget_ms":-1e400}', "latency_budget_ms"),
    ],
)
def test_non_finite_numbers_answer_422_naming_the_field(
    client: TestClient, table: MemoryTable, method: str, path: str, body: str, field: str
) -> None:
    response = client.request(method, path, content=body, headers=JSON_BODY)
    assert response.status_code == 422, response.text
    assert field in fields_of(response)
    assert table.specs == {"door": DOOR}  # nothing written


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("min_score=nan", "min_score"),
        ("min_score=inf", "min_score"),
        ("min_score=-Infinity", "min_score"),
        ("min_score=1e400", "min_score"),
        ("min_score=abc", "min_score"),
        ("min_score=1.5", "min_score"),
        ("zone=0,0,inf,0,1,1", "zone"),
        ("zone=0,0,nan,0,1,1", "zone"),
        ("from_id=latest", "from_id"),
    ],
)
def test_sse_parameters_answer_422_naming_the_field(
    client: TestClient, query: str, field: str
) -> None:
    response = client.get(f"/v1/streams/door/events?{query}", headers=AUTH)
    assert response.status_code == 422, response.text
    assert fields_of(response) == [field]
    assert response.json()["detail"][0]["loc"] == ["query", field]


@pytest.mark.parametrize("query", ["min_score=abc", "min_score=nan", "min_score=1e400"])
def test_websocket_parameters_close_4422_with_the_reason(client: TestClient, query: str) -> None:
    url = f"/v1/streams/door/events?{query}&access_token={TOKEN}"
    with client.websocket_connect(url) as socket, pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_text()
    assert closed.value.code == 4422
    assert closed.value.reason.startswith("min_score:")


def assert_unavailable(response: object) -> str:
    assert response.status_code == 503, response.text  # type: ignore[attr-defined]
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)  # type: ignore[attr-defined]
    detail: str = response.json()["detail"]  # type: ignore[attr-defined]
    assert "Redis" in detail
    return detail


def test_redis_down_reads_answer_503(client: TestClient) -> None:
    assert_unavailable(client.get("/v1/streams", headers=AUTH))
    assert_unavailable(client.get("/v1/streams/door", headers=AUTH))
    assert_unavailable(client.get("/v1/streams/door/frames/1-1", headers=AUTH))
    assert client.get("/v1/streams/nope", headers=AUTH).status_code == 404
    assert client.get("/v1/models", headers=AUTH).status_code == 200  # needs no Redis


def test_redis_down_writes_answer_503_and_change_nothing(
    client: TestClient, table: MemoryTable
) -> None:
    created = client.post(
        "/v1/streams", json={"id": "new", "url": "rtsp://cam/new", "model": MODEL}, headers=AUTH
    )
    assert "nothing was changed" in assert_unavailable(created)
    assert "nothing was changed" in assert_unavailable(
        client.patch("/v1/streams/door", json={"fps": 2}, headers=AUTH)
    )
    assert "nothing was changed" in assert_unavailable(
        client.delete("/v1/streams/door", headers=AUTH)
    )
    assert table.specs == {"door": DOOR}
    invalid = client.post(
        "/v1/streams", json={"url": "rtsp://c/x", "model": MODEL, "fps": 0}, headers=AUTH
    )
    assert invalid.status_code == 422  # a bad request is named whatever the stores' state


def test_public_errors_leave_out_what_json_cannot_carry() -> None:
    shown = public_errors(
        [
            {"type": "finite_number", "loc": ("body", "fps"), "msg": "m", "input": math.inf},
            {"type": "too_big", "loc": ("body", "fps"), "msg": "m", "input": 61, "ctx": {"le": 60}},
            {"type": "x", "loc": ("body", 0), "msg": "m", "input": {"a": [math.nan]}},
        ]
    )
    assert shown == [
        {"type": "finite_number", "loc": ["body", "fps"], "msg": "m"},
        {"type": "too_big", "loc": ["body", "fps"], "msg": "m", "input": 61, "ctx": {"le": 60}},
        {"type": "x", "loc": ["body", 0], "msg": "m"},
    ]
    json.dumps(shown, allow_nan=False)


def test_a_dropped_subscriber_closes_with_1013_and_an_ended_one_with_1000() -> None:
    assert Ended("subscriber too slow: 256 events waited", dropped=True).close_code == 1013
    assert Ended("ended").close_code == 1000
    assert Ended("the word slow in a reason").close_code == 1000
