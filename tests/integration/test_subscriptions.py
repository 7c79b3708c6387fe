"""Event subscriptions against real Redis: no event lost between a client's connect and the
server's first read, resuming over WebSocket and SSE with every event exactly once and in
order, server-side filters, and a stalled subscriber that is dropped without holding up a
healthy one."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from services.common.events import Instance, MaskEvent, encode_event
from services.common.redis import EventPublisher, entry_id, make_redis
from services.common.settings import ApiToken, Settings
from tests.integration.api_server import READ_TOKEN, ApiServer, api_settings
from tests.integration.workers import wait_for

pytestmark = pytest.mark.integration

H, W = 40, 60
STREAM = f"cam-{uuid.uuid4().hex[:8]}"  # Redis keys are per stream id: one of this module's own
WRITE_ONLY_TOKEN = "wo-" + "5a5a5a5a5a5a5a5a" * 2  # a valid token without events:read


def instance(
    label: str, class_id: int, score: float, x0: int, x1: int, noisy: bool = False
) -> Instance:
    mask = np.zeros((H, W), np.uint8)
    mask[5:35, x0:x1] = 1
    if noisy:  # many runs: a large event, to fill socket buffers quickly
        mask[::2, x0:x1] = 0
    rle = mask_utils.encode(np.asfortranarray(mask))
    return Instance(
        label, class_id, score, (float(x0), 5.0, float(x1), 35.0), (H, W), rle["counts"].decode()
    )


def event(seq: int, instances: tuple[Instance, ...]) -> MaskEvent:
    now = time.time()
    return MaskEvent(STREAM, seq, seq / 5, now, now, "yolact_r18_demo", W, H, instances)


def as_entries(events: list[MaskEvent]) -> list[tuple[str, str, bytes]]:
    return [(e.stream_id, entry_id(e.captured_at, e.seq), encode_event(e)) for e in events]


def publish(settings: Settings, events: list[MaskEvent]) -> None:
    client = make_redis(settings)
    try:
        EventPublisher(client, 100_000).publish(as_entries(events))
    finally:
        client.close()


def id_key(entry: str) -> tuple[int, int]:
    """A Redis stream entry id as the pair it is ordered by."""
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq)


@pytest.fixture
def api(ns_settings: Settings) -> Iterator[ApiServer]:
    global STREAM
    STREAM = f"cam-{uuid.uuid4().hex[:8]}"
    settings = api_settings(ns_settings, api_subscriber_queue=16, api_subscriber_stall_s=3)
    write_only = ApiToken(name="writer", token=WRITE_ONLY_TOKEN, scopes=("streams:write",))  # type: ignore[arg-type]
    settings = settings.model_copy(update={"api_tokens": [*settings.api_tokens, write_only]})
    with ApiServer(settings) as server:
        with server.client() as client:
            created = client.post(
                "/v1/streams", json={"id": STREAM, "url": "rtsp://c/x", "model": "yolact_r18_demo"}
            )
            assert created.status_code == 201
        yield server


def ws_url(api: ApiServer, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"access_token": READ_TOKEN, **query}.items())
    return api.url.replace("http://", "ws://") + f"/v1/streams/{STREAM}/events?{params}"


def subscribed(socket: Any) -> str:
    """The id a new WebSocket subscription reads after: its first message."""
    first = json.loads(socket.recv(timeout=30))
    assert list(first) == ["subscribed"], first
    return str(first["subscribed"])


TRIALS = 20


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_no_event_between_connect_and_first_read_is_lost(
    api: ApiServer, ns_settings: Settings, transport: str
) -> None:
    """Connect without ``from_id`` ("from now"), publish at once without waiting for
    anything, and the event must arrive, after the handshake's ``subscribed`` id.

    Before the handshake, the server accepted the WebSocket (and began the SSE response)
    first and only then, in the reader task it started, resolved "now" with XREVRANGE: an
    event published as soon as the client's connect returned could land before that read,
    become the "newest entry" the reader started after, and never be delivered. Run against
    that code, this test failed on lost events: 15 of 20 over WebSocket, 16 of 20 over SSE.
    Now where reading starts is fixed before the handshake completes (before the response
    starts, for SSE), so no trial may lose its event.
    """
    client = make_redis(ns_settings)
    publisher = EventPublisher(client, 100_000)
    publisher.publish(as_entries([event(0, ())]))  # the script is loaded: one round trip each
    outcomes: list[tuple[str | None, list[tuple[str, int]]]] = []
    try:
        for trial in range(1, TRIALS + 1):
            sent = event(trial, ())
            if transport == "websocket":
                outcomes.append(ws_trial(api, publisher, sent))
            else:
                outcomes.append(sse_trial(api, publisher, sent))
    finally:
        client.close()
    lost = [t for t, (_, got) in enumerate(outcomes, 1) if t not in [seq for _, seq in got]]
    assert lost == [], f"{len(lost)} of {TRIALS} events published right after connect were lost"
    for trial, (after, got) in enumerate(outcomes, 1):
        assert after is not None, "no subscribed message came first"
        assert [seq for _, seq in got] == [trial]
        assert id_key(after) < id_key(got[0][0])


def ws_trial(
    api: ApiServer, publisher: EventPublisher, sent: MaskEvent
) -> tuple[str | None, list[tuple[str, int]]]:
    """(the subscribed id, the events received) of one connect-then-publish."""
    after: str | None = None
    got: list[tuple[str, int]] = []
    with connect(ws_url(api)) as socket:
        publisher.publish(as_entries([sent]))  # no wait: the server may not have read yet
        with contextlib.suppress(TimeoutError):
            while not got:
                message = json.loads(socket.recv(timeout=5))
                if "subscribed" in message:  # before any event: the loop ends at one
                    after = message["subscribed"]
                else:
                    got.append((message["id"], message["event"]["seq"]))
    return after, got


def sse_trial(
    api: ApiServer, publisher: EventPublisher, sent: MaskEvent
) -> tuple[str | None, list[tuple[str, int]]]:
    """As :func:`ws_trial`, over Server-Sent Events (the ``: subscribed <id>`` comment)."""
    after: str | None = None
    got: list[tuple[str, int]] = []
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    url = f"{api.url}/v1/streams/{STREAM}/events"
    with httpx.stream("GET", url, headers=headers, timeout=5) as response:
        assert response.status_code == 200
        publisher.publish(as_entries([sent]))  # no wait: the server may not have read yet
        current = ""
        with contextlib.suppress(httpx.ReadTimeout):
            for line in response.iter_lines():
                if line.startswith(": subscribed "):  # before any event: the loop ends at one
                    after = line.removeprefix(": subscribed ")
                elif line.startswith("id: "):
                    current = line[4:]
                elif line.startswith("data: "):
                    got.append((current, json.loads(line[6:])["seq"]))
                    break
    return after, got


def test_websocket_resume_gives_every_event_once_in_order(
    api: ApiServer, ns_settings: Settings
) -> None:
    received: list[tuple[str, int]] = []
    with connect(ws_url(api)) as socket:
        subscribed(socket)
        publish(ns_settings, [event(s, ()) for s in range(20)])
        for _ in range(12):
            message = json.loads(socket.recv(timeout=30))
            received.append((message["id"], message["event"]["seq"]))
    # disconnected with 8 events published and not read; more arrive while it is away
    publish(ns_settings, [event(s, ()) for s in range(20, 40)])
    last = received[-1][0]
    with connect(ws_url(api, from_id=last)) as socket:
        assert subscribed(socket) == last
        while len(received) < 40:
            message = json.loads(socket.recv(timeout=30))
            received.append((message["id"], message["event"]["seq"]))
        publish(ns_settings, [event(40, ())])
        after = json.loads(socket.recv(timeout=30))  # the next one, not a repeat
    assert [seq for _, seq in received] == list(range(40))
    assert len({entry for entry, _ in received}) == 40
    assert after["event"]["seq"] == 40


def test_sse_resume_with_last_event_id(api: ApiServer, ns_settings: Settings) -> None:
    publish(ns_settings, [event(s, ()) for s in range(10)])
    url = f"{api.url}/v1/streams/{STREAM}/events"
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}

    def read(
        extra: dict[str, str], params: dict[str, str], count: int
    ) -> tuple[str, list[tuple[str, int]]]:
        got: list[tuple[str, int]] = []
        with httpx.stream(
            "GET", url, headers={**headers, **extra}, params=params, timeout=30
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            head = next(lines)
            assert head.startswith(": subscribed "), head
            after = head.removeprefix(": subscribed ")
            current = ""
            for line in lines:
                if line.startswith("id: "):
                    current = line[4:]
                elif line.startswith("data: "):
                    got.append((current, json.loads(line[6:])["seq"]))
                    if len(got) == count:
                        break
        return after, got

    after, first = read({}, {"from_id": "0-0"}, 4)
    assert after == "0-0"
    after, rest = read({"Last-Event-ID": first[-1][0]}, {}, 6)
    assert after == first[-1][0]
    assert [s for _, s in first + rest] == list(range(10))


def test_filters_drop_what_they_should_and_nothing_else(
    api: ApiServer, ns_settings: Settings
) -> None:
    events = [
        event(0, (instance("disc", 0, 0.9, 2, 20), instance("star", 3, 0.8, 40, 58))),
        event(1, (instance("disc", 0, 0.2, 40, 58),)),
        event(2, (instance("star", 3, 0.95, 2, 20),)),
        event(3, ()),
        event(4, (instance("disc", 0, 0.6, 25, 35),)),
        event(5, (instance("disc", 0, 0.99, 2, 58),)),  # the end: passes every filter below
    ]
    publish(ns_settings, events)

    def subscribe(**query: str) -> list[tuple[int, list[tuple[str, float]]]]:
        """What the filter passes of events 0-4 (event 5 ends the list)."""
        got = []
        with connect(ws_url(api, from_id="0-0", **query)) as socket:
            assert subscribed(socket) == "0-0"
            while True:
                message = json.loads(socket.recv(timeout=30))
                if message["event"]["seq"] == 5:
                    return got
                got.append(
                    (
                        message["event"]["seq"],
                        [(i["label"], i["score"]) for i in message["event"]["instances"]],
                    )
                )

    assert [seq for seq, _ in subscribe()] == [0, 1, 2, 3, 4]  # no filter: everything
    assert subscribe(classes="disc") == [
        (0, [("disc", 0.9)]),
        (1, [("disc", 0.2)]),
        (4, [("disc", 0.6)]),
    ]
    assert subscribe(min_score="0.7") == [
        (0, [("disc", 0.9), ("star", 0.8)]),
        (2, [("star", 0.95)]),
    ]
    # the left third of the frame: instances reaching into x < 20
    assert subscribe(zone="0,0,20,0,20,40,0,40") == [(0, [("disc", 0.9)]), (2, [("star", 0.95)])]
    assert subscribe(classes="disc,star", min_score="0.5", zone="30,0,60,0,60,40,30,40") == [
        (0, [("star", 0.8)]),
        (4, [("disc", 0.6)]),
    ]
    with connect(ws_url(api, zone="1,2,3")) as socket, pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4422
    assert "zone" in closed.value.rcvd.reason


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"min_score": "abc"}, "min_score"),
        ({"min_score": "nan"}, "min_score"),
        ({"min_score": "1e400"}, "min_score"),
        ({"zone": "0,0,inf,0,9,9"}, "zone"),
        ({"from_id": "latest"}, "from_id"),
    ],
)
def test_bad_parameters_are_named_after_the_handshake(
    api: ApiServer, query: dict[str, str], field: str
) -> None:
    # validated by the route, so the client is told which parameter, never a bare 403 that
    # reads as a token problem
    with connect(ws_url(api, **query)) as socket, pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4422
    assert closed.value.rcvd.reason.startswith(f"{field}:")
    with api.client(READ_TOKEN) as client:
        sse = client.get(f"/v1/streams/{STREAM}/events", params=query)
    assert sse.status_code == 422, sse.text
    assert [e["loc"] for e in sse.json()["detail"]] == [["query", field]]


def test_wrong_or_missing_token_and_unknown_stream_close_the_socket(api: ApiServer) -> None:
    base = api.url.replace("http://", "ws://")
    cases = [
        (f"{base}/v1/streams/{STREAM}/events", 4401),
        (f"{base}/v1/streams/{STREAM}/events?access_token=wrong-token-0123456789", 4401),
        (f"{base}/v1/streams/{STREAM}/events?access_token={WRITE_ONLY_TOKEN}", 4403),
        (f"{base}/v1/streams/nope/events?access_token={READ_TOKEN}", 4404),
    ]
    for url, code in cases:
        with connect(url) as socket, pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def stalled_socket(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then reads nothing, with a small
    receive buffer: the server's sends to it back up."""
    parts = urllib.parse.urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_stalled_subscriber_is_dropped_and_does_not_hold_up_others(
    api: ApiServer, ns_settings: Settings
) -> None:
    count = 1500
    stalled = stalled_socket(ws_url(api))  # reading from its handshake on
    try:
        with connect(ws_url(api)) as healthy:
            subscribed(healthy)
            big = tuple(instance("ring", 4, 0.9, 1, 59, noisy=True) for _ in range(6))
            feeder = threading.Thread(
                target=lambda: [
                    publish(ns_settings, [event(s + k, big) for k in range(100)])
                    for s in range(0, count, 100)
                ]
            )
            feeder.start()
            seqs = [json.loads(healthy.recv(timeout=60))["event"]["seq"] for _ in range(count)]
            feeder.join()
        assert seqs == list(range(count))

        def dropped() -> bool:
            with api.client(token=None) as client:
                metrics = client.get("/metrics").text
            return 'segstream_subscribers_dropped_total{kind="websocket",reason="slow"} 1.0' in (
                metrics
            )

        wait_for(dropped, 60, "the stalled subscriber to be dropped")
        # what it had not read is gone with the connection: it ends (close frame or reset)
        stalled.settimeout(60)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := stalled.recv(1 << 20):
                received += len(chunk)
        assert received < count * 9000  # it never got everything
    finally:
        stalled.close()
