"""The REST API against real Kafka and Redis: every route with valid and invalid input,
missing and wrong tokens, masked camera credentials, and a schemathesis run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common.redis import make_redis, status_key
from services.common.settings import Settings
from services.infra import Infra
from services.infra.process import free_port
from tests.integration.api_server import READ_TOKEN, WRITE_TOKEN, ApiServer, api_settings
from tests.integration.workers import wait_for

pytestmark = pytest.mark.integration

BODY = {"url": "rtsp://cam/x", "model": "yolact_r18_demo"}
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
NON_FINITE = r":\s*(NaN|-?Infinity|-?1e309|-?1e400)\s*[,}]"  # a JSON number no float holds
BODY_LIMIT = 4096  # the API's body limit in these tests


@pytest.fixture
def api(ns_settings: Settings) -> Iterator[ApiServer]:
    with ApiServer(api_settings(ns_settings, api_max_body_bytes=BODY_LIMIT)) as server:
        yield server


def test_health_ready_metrics_need_no_token(api: ApiServer) -> None:
    with api.client(token=None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {
            "ready": True,
            "redis": "ok",
            "kafka": "ok",
        }
        assert client.get("/v1/models").status_code == 401
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert 'segstream_api_requests_total{method="GET",route="/readyz",status="200"}' in (
            metrics.text
        )
        assert 'segstream_api_requests_total{method="GET",route="/v1/models",status="401"}' in (
            metrics.text
        )
        assert client.get("/openapi.json").status_code == 200  # the description holds no data


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/models", None),
        ("GET", "/v1/streams", None),
        ("POST", "/v1/streams", {"url": "rtsp://cam/x", "model": "yolact_r18_demo"}),
        ("GET", "/v1/streams/x", None),
        ("PATCH", "/v1/streams/x", {"fps": 2}),
        ("DELETE", "/v1/streams/x", None),
        ("GET", "/v1/streams/x/events", None),
        ("GET", "/v1/streams/x/frames/1-1", None),
        ("GET", "/viewer", None),
    ],
)
def test_routes_need_a_valid_token(
    api: ApiServer, method: str, path: str, body: dict | None
) -> None:
    with api.client(token=None) as client:
        missing = client.request(method, path, json=body)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = client.request(
            method, path, json=body, headers={"Authorization": "Bearer not-the-token-at-all"}
        )
        assert wrong.status_code == 401
        basic = client.request(method, path, json=body, headers={"Authorization": "Basic eDp5"})
        assert basic.status_code == 401


def test_read_token_cannot_write(api: ApiServer) -> None:
    with api.client(READ_TOKEN) as client:
        created = client.post("/v1/streams", json={"url": "rtsp://c/x", "model": "yolact_r18_demo"})
        assert created.status_code == 403 and "streams:write" in created.json()["detail"]
        assert client.get("/v1/streams").status_code == 200
        assert client.get("/v1/models").status_code == 200


def test_models(api: ApiServer) -> None:
    with api.client() as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()}
    assert models["yolact_r18_demo"]["input_side"] == 256
    assert models["maskrcnn_r50_fpn"]["input_side"] == 800


def test_stream_lifecycle_masks_credentials(api: ApiServer, ns_settings: Settings) -> None:
    url = "rtsp://admin:hunter2@10.1.2.3:554/live"
    with api.client() as client:
        created = client.post(
            "/v1/streams", json={"id": "door", "url": url, "model": "yolact_r18_demo", "fps": 4}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["url"] == "rtsp://***@10.1.2.3:554/live" and body["fps"] == 4
        assert body["health"] is None
        assert "hunter2" not in created.text
        again = client.post(
            "/v1/streams", json={"id": "door", "url": url, "model": "yolact_r18_demo"}
        )
        assert again.status_code == 409

        redis_client = make_redis(ns_settings)
        try:
            redis_client.hset(
                status_key("door"),
                mapping={
                    "state": "backoff",
                    "reason": "unreachable",
                    "message": f"cannot open {url}: refused",
                    "reconnects": "3",
                    "frames": "0",
                    "last_frame_at": "0.000",
                    "fps": "0.00",
                    "worker": "ingest-1",
                    "updated_at": "1764000000.5",
                },
            )
        finally:
            redis_client.close()
        shown = client.get("/v1/streams/door")
        assert shown.status_code == 200
        health = shown.json()["health"]
        assert health["state"] == "backoff" and health["reconnects"] == 3
        assert health["last_frame_at"] is None and "hunter2" not in shown.text
        assert health["message"] == "cannot open rtsp://***@10.1.2.3:554/live: refused"
        assert health["updated_at"] == 1764000000.5 and health["worker"] == "ingest-1"

        redis_client = make_redis(ns_settings)
        try:  # a number that does not parse: the state is still shown, nothing else
            redis_client.hset(status_key("door"), "reconnects", "three")
        finally:
            redis_client.close()
        degraded = client.get("/v1/streams/door").json()["health"]
        assert degraded["state"] == "backoff" and degraded["reconnects"] == 0
        assert degraded["reason"] == "" and degraded["message"] == ""
        listed = client.get("/v1/streams").json()
        assert [s["id"] for s in listed] == ["door"] and "hunter2" not in json.dumps(listed)

        patched = client.patch("/v1/streams/door", json={"fps": 2, "latency_budget_ms": 800})
        assert patched.status_code == 200 and patched.json()["fps"] == 2
        assert patched.json()["latency_budget_ms"] == 800
        assert client.get("/v1/streams/door").json()["fps"] == 2
        bad = client.patch("/v1/streams/door", json={"fps": 0})
        assert bad.status_code == 422 and "fps" in json.dumps(bad.json())
        null = client.patch("/v1/streams/door", json={"url": None})
        assert null.status_code == 422 and "url" in json.dumps(null.json())
        assert client.patch("/v1/streams/nope", json={"fps": 1}).status_code == 404

        assert client.delete("/v1/streams/door").status_code == 204
        assert client.get("/v1/streams/door").status_code == 404
        assert client.delete("/v1/streams/door").status_code == 404
        generated = client.post(
            "/v1/streams", json={"url": "https://cam.example/live.m3u8", "model": "yolact_r18_demo"}
        )
        assert generated.status_code == 201 and generated.json()["id"].startswith("cam-")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://cam/x", "model": "yolact_r18_demo"}, "url"),
        ({"url": "/videos/a.mp4", "model": "yolact_r18_demo"}, "url"),
        ({"url": "file:///videos/a.mp4", "model": "yolact_r18_demo"}, "url"),
        ({"url": "rtsp://", "model": "yolact_r18_demo"}, "url"),
        ({"url": "rtsp://cam/x", "model": "no_such_model"}, "model"),
        ({"url": "rtsp://cam/x", "model": "yolact_r18_demo", "fps": 100}, "fps"),
        ({"url": "rtsp://cam/x", "model": "yolact_r18_demo", "fps": -1}, "fps"),
        ({"url": "rtsp://cam/x", "model": "yolact_r18_demo", "max_side": 4}, "max_side"),
        ({"url": "rtsp://cam/x", "model": "yolact_r18_demo", "id": "a b/c"}, "id"),
        ({"url": "rtsp://cam/x", "model": "yolact_r18_demo", "colour": "red"}, "colour"),
        ({"model": "yolact_r18_demo"}, "url"),
    ],
)
def test_invalid_streams_name_the_field(api: ApiServer, body: dict, field: str) -> None:
    with api.client() as client:
        response = client.post("/v1/streams", json=body)
    assert response.status_code == 422, response.text
    locations = [e["loc"][-1] for e in response.json()["detail"]]
    assert field in locations


def test_files_only_when_enabled(ns_settings: Settings) -> None:
    with (
        ApiServer(api_settings(ns_settings, api_allow_files=True)) as server,
        server.client() as client,
    ):
        created = client.post(
            "/v1/streams", json={"url": "/videos/a.mp4", "model": "yolact_r18_demo"}
        )
        assert created.status_code == 201


def test_request_size_limit(api: ApiServer) -> None:
    with api.client() as client:
        big = client.post(
            "/v1/streams",
            content=b'{"url": "rtsp://cam/x", "model": "' + b"m" * 10_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413
        chunked = client.post(
            "/v1/streams",
            content=iter([b"{" + b" " * 3000, b" " * 3000 + b"}"]),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413


def test_frames_route(api: ApiServer, ns_settings: Settings) -> None:
    from services.common.redis import frames_key

    with api.client() as client:
        client.post(
            "/v1/streams", json={"id": "cam", "url": "rtsp://c/x", "model": "yolact_r18_demo"}
        )
        redis_client = make_redis(ns_settings)
        try:
            redis_client.xadd(frames_key("cam"), {"jpeg": b"\xff\xd8jpeg\xff\xd9"}, id="1000-1")
        finally:
            redis_client.close()
        got = client.get("/v1/streams/cam/frames/1000-1")
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        assert got.content.startswith(b"\xff\xd8")
        assert client.get("/v1/streams/cam/frames/1000-2").status_code == 404
        assert client.get("/v1/streams/cam/frames/latest").status_code == 422
        assert client.get("/v1/streams/nope/frames/1-1").status_code == 404


def test_redis_down_answers_503_and_writes_nothing(ns_settings: Settings) -> None:
    with ApiServer(api_settings(ns_settings)) as healthy, healthy.client() as client:
        made = client.post("/v1/streams", json={"id": "kept", **BODY, "fps": 3})
        assert made.status_code == 201, made.text
    # the same registry, and a Redis port where nothing listens
    down = api_settings(ns_settings, redis_url=None, redis_port=free_port())
    with ApiServer(down) as broken, broken.client() as client:
        answers = {
            "list": client.get("/v1/streams"),
            "show": client.get("/v1/streams/kept"),
            "create": client.post("/v1/streams", json={"id": "new", **BODY}),
            "update": client.patch("/v1/streams/kept", json={"fps": 1}),
            "delete": client.delete("/v1/streams/kept"),
            "frame": client.get("/v1/streams/kept/frames/1-1"),
        }
        for what, answer in answers.items():
            assert answer.status_code == 503, (what, answer.text)
            assert int(answer.headers["retry-after"]) > 0, what
            assert "Redis" in answer.json()["detail"], what
        for what in ("create", "update", "delete"):
            assert "nothing was changed" in answers[what].json()["detail"], what
        assert client.get("/readyz").status_code == 503
        assert client.get("/v1/streams/new").status_code == 404  # not in its own view either
    # a fresh view of the registry topic: no write was made
    with ApiServer(api_settings(ns_settings)) as fresh, fresh.client() as client:
        listed = client.get("/v1/streams").json()
        assert [(s["id"], s["fps"]) for s in listed] == [("kept", 3)]


def test_kafka_down_writes_answer_503_and_are_not_made(own_infra: Infra) -> None:
    kafka = own_infra.components[0]
    assert kafka.name == "kafka"
    with ApiServer(api_settings(own_infra.settings)) as api, api.client() as client:
        made = client.post("/v1/streams", json={"id": "kept", **BODY, "fps": 3})
        assert made.status_code == 201, made.text
        kafka.proc.stop()
        created = client.post("/v1/streams", json={"id": "lost", **BODY})
        deleted = client.delete("/v1/streams/kept")
        for answer in (created, deleted):
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) > 0
            detail = answer.json()["detail"]
            assert "registry (Kafka)" in detail and "nothing was changed" in detail
        assert client.get("/v1/streams/lost").status_code == 404
        assert client.get("/v1/streams/kept").status_code == 200  # its view still has it
        kafka.start()
        kafka.wait_ready()

        def recovered() -> bool:
            answer = client.post("/v1/streams", json={"id": "later", **BODY})
            assert answer.status_code in (201, 503), answer.text
            return answer.status_code == 201

        wait_for(recovered, 90, "a write once Kafka is back")
    # what the registry topic holds, read again from the beginning
    with ApiServer(api_settings(own_infra.settings)) as fresh, fresh.client() as client:
        assert [s["id"] for s in client.get("/v1/streams").json()] == ["kept", "later"]


def test_schemathesis_finds_no_server_error(api: ApiServer, tmp_path: Path) -> None:
    """Schemathesis's cases, plus non-finite numbers in bodies and queries (the hooks of
    ``schemathesis_hooks.py``): no 5xx, and the non-finite ones were sent and refused."""
    har = tmp_path / "run.har"
    done = subprocess.run(
        [
            str(sys.executable).replace("/python", "/schemathesis")
            if (sys.executable.endswith("/python"))
            else "schemathesis",
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {WRITE_TOKEN}",
            "--exclude-path",
            "/v1/streams/{stream_id}/events",
            "--exclude-path",
            "/v1/streams/{stream_id}/analytics/events",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--report",
            "har",
            "--report-har-path",
            str(har),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
    )
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert "passed" in tail.lower()
    entries = json.loads(har.read_text())["log"]["entries"]
    non_finite = [
        e
        for e in entries
        if re.search(NON_FINITE, (e["request"].get("postData") or {}).get("text", ""))
    ]
    assert non_finite, "no request carried a non-finite number"

    def size(entry: dict[str, Any]) -> int:
        return len(entry["request"]["postData"]["text"].encode())

    # refused: 422 naming the field, or 413 before any route for a body over the limit (a
    # stream's zones and lines make large bodies easy to generate)
    assert {e["response"]["status"] for e in non_finite if size(e) <= BODY_LIMIT} == {422}
    assert {e["response"]["status"] for e in non_finite if size(e) > BODY_LIMIT} <= {413}
