"""The destination policy against real servers: the API refuses the cloud metadata address,
the service's own ports, names resolving to loopback and files outside the root; an ingest
worker refuses a denied address at connect time (a record registered past the API, as a name
whose DNS answer changed would be) without connecting; and a stream's status shows its
reason's fixed text, never what the target answered."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from services.common.health import Reason
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from services.ingest.source import FIXED_MESSAGES
from tests.integration.api_server import ApiServer, api_settings
from tests.integration.workers import Worker, wait_state

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
SECRET = "internal-service-banner-7f3a"


class Target(ThreadingHTTPServer):
    """An internal service on loopback that answers every GET with 403 and words of its own,
    counting the requests it got."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Forbidden)
        self.requests = 0

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Forbidden(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        body = f"{SECRET}\n".encode()
        self.send_response(403, f"Forbidden {SECRET}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def client(ns_settings: Settings) -> Iterator[redis.Redis]:
    client = make_redis(ns_settings)
    try:
        yield client
    finally:
        client.close()


def test_the_api_refuses_denied_destinations(ns_settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    root.mkdir()
    (root / "cam.mp4").write_bytes(b"not opened by the API")
    (root / "shadow.mp4").symlink_to("/etc/shadow")
    settings = api_settings(ns_settings, api_allow_files=True, file_root=root)
    assert "127.0.0.0/8" in settings.source_allowed_networks  # the test cameras' loopback
    refused = [
        "http://169.254.169.254/latest/meta-data/",
        "rtsp://169.254.169.254/x",
        "http://[fe80::1]/x",
        f"rtsp://127.0.0.1:{settings.redis_port}/",  # the service's Redis, loopback allowed
        f"http://localhost:{settings.kafka_port}/",
        "/etc/passwd",
        "/etc/shadow",
        f"{root}/../cam.mp4",
        str(root / "shadow.mp4"),
    ]
    with ApiServer(settings) as server, server.client() as http:
        for url in refused:
            response = http.post("/v1/streams", json={"url": url, "model": MODEL})
            assert response.status_code == 422, (url, response.text)
            (error,) = response.json()["detail"]
            assert error["loc"][-1] == "url" and url in error["msg"], error
        assert http.get("/v1/streams").json() == []  # nothing refused was registered
        for url in (str(root / "cam.mp4"), "rtsp://10.1.2.3/live", "rtsp://192.168.0.9/x"):
            response = http.post("/v1/streams", json={"url": url, "model": MODEL})
            assert response.status_code == 201, (url, response.text)
        stream_id = response.json()["id"]
        patched = http.patch(f"/v1/streams/{stream_id}", json={"url": "rtsp://169.254.169.254/"})
        assert patched.status_code == 422, patched.text
        assert http.get(f"/v1/streams/{stream_id}").json()["url"] == "rtsp://192.168.0.9/x"
    defaults = api_settings(ns_settings, source_allowed_networks=[])
    with ApiServer(defaults) as server, server.client() as http:
        response = http.post("/v1/streams", json={"url": "rtsp://localhost:8554/x", "model": MODEL})
        assert response.status_code == 422, response.text
        assert "127.0.0.1" in response.text or "::1" in response.text


def test_the_worker_refuses_a_denied_address_at_connect_time(
    ns_settings: Settings, tmp_path: Path, client: redis.Redis, target: Target, unique: str
) -> None:
    """Registered past the API (as a name whose DNS answer changed since would be): the
    worker resolves ``localhost``, finds loopback denied, and never connects."""
    settings = ns_settings.model_copy(update={"source_allowed_networks": []})
    worker = Worker(settings, ["ingest"], tmp_path, "ingest-default-policy")
    try:
        stream_id = f"rebound-{unique}"
        url = f"http://admin:pw@localhost:{target.port}/cam.m3u8"
        put_stream(settings, StreamSpec(id=stream_id, url=url, model=MODEL))
        status = wait_state(client, stream_id, {"error"}, 60)
    finally:
        worker.stop(timeout=10)
    assert status["reason"] == "forbidden-destination", status
    assert status["message"] == FIXED_MESSAGES[Reason.FORBIDDEN_DESTINATION], status
    assert target.requests == 0


def test_a_status_never_repeats_what_the_target_answered(
    spawn: Callable[..., Worker],
    ns_settings: Settings,
    client: redis.Redis,
    target: Target,
    unique: str,
) -> None:
    """Loopback allowed (as in every test): the target answers 403 with its own words; the
    status says ``not-video`` with the fixed text only. The service's Redis port stays denied."""
    spawn("ingest")
    answered, redis_port = f"answered-{unique}", f"redis-port-{unique}"
    put_stream(
        ns_settings,
        StreamSpec(id=answered, url=f"http://127.0.0.1:{target.port}/x.m3u8", model=MODEL),
    )
    url = f"rtsp://127.0.0.1:{ns_settings.redis_port}/"
    put_stream(ns_settings, StreamSpec(id=redis_port, url=url, model=MODEL))
    status = wait_state(client, answered, {"error"}, 60)
    assert target.requests >= 1  # the target was asked, and its answer stays out of the status
    assert status["reason"] == "not-video", status
    assert status["message"] == FIXED_MESSAGES[Reason.NOT_VIDEO], status
    assert SECRET not in str(status) and "403" not in str(status)
    denied = wait_state(client, redis_port, {"error"}, 60)
    assert denied["reason"] == "forbidden-destination", denied
    assert denied["message"] == FIXED_MESSAGES[Reason.FORBIDDEN_DESTINATION], denied
