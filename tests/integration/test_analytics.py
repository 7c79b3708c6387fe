"""Zones and lines against the real registry (Kafka) and event store (Redis): a stream
registered and patched with zones and lines, bad definitions answered 422 naming the field;
analytics events, made by segcore's Analytics from a track walking through a zone and across
a line and added to ``segstream:analytics:<id>`` as the segment worker adds them (field
``event``, ids assigned by Redis), delivered over WebSocket and SSE, resumed with every event
once and in order, filtered on the server; and the counts route reading the tracking
document."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from websockets.sync.client import connect

from segcore.tracking import Analytics, Tracked
from services.common.events import (
    AnalyticsEvent,
    Instance,
    MaskEvent,
    decode_analytics,
    encode_analytics,
    encode_event,
)
from services.common.redis import EventPublisher, analytics_key, entry_id, make_redis, tracks_key
from services.common.settings import Settings
from services.common.streams import StreamSpec
from tests.integration.api_server import READ_TOKEN, ApiServer, api_settings

pytestmark = pytest.mark.integration

H, W = 90, 160
MODEL = "yolact_r18_demo"
ZONES = [
    {"name": "lot", "polygon": [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]], "loiter_s": 1.0},
    {"name": "top", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.3], [0.0, 0.3]]},
]
LINES = [{"name": "gate", "a": [0.25, 0.0], "b": [0.25, 1.0]}]


@pytest.fixture
def api(ns_settings: Settings) -> Iterator[tuple[ApiServer, str]]:
    stream = f"cam-{uuid.uuid4().hex[:8]}"
    with ApiServer(api_settings(ns_settings)) as server:
        with server.client() as client:
            created = client.post(
                "/v1/streams",
                json={"id": stream, "url": "rtsp://c/x", "model": MODEL, "zones": ZONES},
            )
            assert created.status_code == 201, created.text
        yield server, stream


def walk() -> list[dict[str, Any]]:
    """The encoded analytics events of two tracks, one walking right through the gate into
    the lot and back, one (a car) crossing into the lot: as the segment worker would publish
    them, frame by frame."""
    spec = StreamSpec(id="s", url="rtsp://c/x", model=MODEL, zones=ZONES, lines=LINES)  # type: ignore[arg-type]
    analytics = Analytics(spec.zone_objects(), spec.line_objects(), forget_after_s=2.0)
    out = []
    xs = [5, 30, 60, 95, 110, 120, 120, 120, 90, 50, 20]
    for seq, x in enumerate(xs):
        items = []
        for track_id, label, y, dx in ((1, "person", 40, 0), (2, "car", 60, 10 * seq)):
            left = min(W - 12, x if track_id == 1 else 20 + dx)
            mask = np.zeros((H, W), np.uint8)
            mask[y : y + 12, left : left + 12] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            box = (float(left), float(y), left + 12.0, y + 12.0)
            items.append(Tracked(track_id, label, 2 if label == "car" else 0, box, rle))
        captured = 1764000000.0 + seq * 0.5
        for body in analytics.update(items, captured, (H, W)):
            event = AnalyticsEvent.of(
                body,
                stream_id="s",
                seq=seq,
                pts=seq * 0.5,
                captured_at=captured,
                published_at=time.time(),
            )
            out.append(json.loads(encode_analytics(event)))
    kinds = {e["type"] for e in out}
    assert kinds == {"zone.enter", "zone.exit", "zone.loiter", "line.cross"}, kinds
    return out


def add(settings: Settings, stream: str, events: list[dict[str, Any]]) -> list[str]:
    """XADD each event (field ``event``, id ``*``) as the publish script does; their ids."""
    client = make_redis(settings)
    try:
        return [
            client.xadd(
                analytics_key(stream), {"event": json.dumps({**e, "stream_id": stream})}
            ).decode()
            for e in events
        ]
    finally:
        client.close()


def ws_url(server: ApiServer, stream: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"access_token": READ_TOKEN, **query}.items())
    base = server.url.replace("http://", "ws://")
    return f"{base}/v1/streams/{stream}/analytics/events?{params}"


def ws_read(server: ApiServer, stream: str, count: int, **query: str) -> tuple[str, list[Any]]:
    got = []
    with connect(ws_url(server, stream, **query)) as socket:
        first = json.loads(socket.recv(timeout=30))
        assert list(first) == ["subscribed"], first
        while len(got) < count:
            message = json.loads(socket.recv(timeout=30))
            decode_analytics(json.dumps(message["event"]))  # each one a valid event
            got.append((message["id"], message["event"]))
    return first["subscribed"], got


def sse_read(
    server: ApiServer, stream: str, count: int, headers: dict[str, str], **query: str
) -> tuple[str, list[Any]]:
    got: list[Any] = []
    url = f"{server.url}/v1/streams/{stream}/analytics/events"
    auth = {"Authorization": f"Bearer {READ_TOKEN}", **headers}
    with httpx.stream("GET", url, headers=auth, params=query, timeout=30) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()
        head = next(lines)
        assert head.startswith(": subscribed "), head
        current = ""
        for line in lines:
            if line.startswith("id: "):
                current = line[4:]
            elif line.startswith("data: "):
                got.append((current, json.loads(line[6:])))
                if len(got) == count:
                    break
    return head.removeprefix(": subscribed "), got


def test_zones_and_lines_are_registered_patched_and_refused_by_field(
    api: tuple[ApiServer, str],
) -> None:
    server, stream = api
    with server.client() as client:
        shown = client.get(f"/v1/streams/{stream}").json()
        assert [z["name"] for z in shown["zones"]] == ["lot", "top"] and shown["lines"] == []
        bowtie = [[0.1, 0.1], [0.4, 0.4], [0.4, 0.1], [0.1, 0.4]]
        bad = client.patch(
            f"/v1/streams/{stream}", json={"zones": [ZONES[0], {"name": "x", "polygon": bowtie}]}
        )
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "zones", 1, "polygon"]
        bad = client.patch(f"/v1/streams/{stream}", json={"lines": [LINES[0], LINES[0]]})
        assert bad.status_code == 422 and "lines[1].name" in bad.json()["detail"][0]["msg"]
        patched = client.patch(f"/v1/streams/{stream}", json={"lines": LINES})
        assert patched.status_code == 200, patched.text
        assert patched.json()["lines"] == LINES
        shown = client.get(f"/v1/streams/{stream}").json()
        assert shown["lines"] == LINES and [z["name"] for z in shown["zones"]] == ["lot", "top"]


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_events_resume_once_in_order(
    api: tuple[ApiServer, str], ns_settings: Settings, transport: str
) -> None:
    server, stream = api
    events = walk()
    half = len(events) // 2
    ids = add(ns_settings, stream, events[:half])
    if transport == "websocket":
        after, first = ws_read(server, stream, 3, from_id="0-0")
    else:
        after, first = sse_read(server, stream, 3, {}, from_id="0-0")
    assert after == "0-0"
    ids += add(ns_settings, stream, events[half:])  # more while it is away
    last = first[-1][0]
    if transport == "websocket":
        after, rest = ws_read(server, stream, len(events) - 3, from_id=last)
    else:
        after, rest = sse_read(server, stream, len(events) - 3, {"Last-Event-ID": last})
    assert after == last
    got = first + rest
    assert [entry for entry, _ in got] == ids  # every one once, in order
    assert [e for _, e in got] == [{**e, "stream_id": stream} for e in events]


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_filters_on_the_server(
    api: tuple[ApiServer, str], ns_settings: Settings, transport: str
) -> None:
    server, stream = api
    events = walk()
    add(ns_settings, stream, events)
    cases = [
        ({"type": "line.cross"}, lambda e: e["type"] == "line.cross"),
        ({"zone": "lot"}, lambda e: e.get("zone") == "lot"),
        ({"label": "car"}, lambda e: e["label"] == "car"),
        (
            {"type": "zone.enter,zone.exit", "zone": "lot,top", "label": "person"},
            lambda e: e["type"] in ("zone.enter", "zone.exit") and e["label"] == "person",
        ),
    ]
    for query, wanted in cases:
        expected = [e for e in events if wanted(e)]
        assert 0 < len(expected) < len(events), query
        if transport == "websocket":
            _, got = ws_read(server, stream, len(expected), from_id="0-0", **query)
        else:
            _, got = sse_read(server, stream, len(expected), {}, from_id="0-0", **query)
        assert [e for _, e in got] == [{**e, "stream_id": stream} for e in expected], query
    # and nothing more: a last event that passes every filter comes next, not a filtered one
    frame = {k: events[-1][k] for k in ("v", "seq", "pts", "captured_at", "published_at")}
    body = {"type": "zone.enter", "track_id": 9, "label": "car", "class_id": 2, "zone": "lot"}
    tail = {**frame, **body, "occupancy": 1, "count": 9}
    with connect(ws_url(server, stream, from_id="0-0", zone="lot", label="car")) as socket:
        json.loads(socket.recv(timeout=30))
        expected = [e for e in events if e.get("zone") == "lot" and e["label"] == "car"]
        seen = [json.loads(socket.recv(timeout=30))["event"] for _ in expected]
        add(ns_settings, stream, [tail])
        assert json.loads(socket.recv(timeout=30))["event"]["count"] == 9
    assert seen == [{**e, "stream_id": stream} for e in expected]


def test_counts_route_reads_the_tracking_document(
    api: tuple[ApiServer, str], ns_settings: Settings
) -> None:
    server, stream = api
    with server.client(READ_TOKEN) as client:
        before = client.get(f"/v1/streams/{stream}/analytics")
        assert before.status_code == 200, before.text
        assert before.json() == {
            "stream_id": stream,
            "last": None,
            "zones": {n: {"occupancy": 0, "entries": 0, "exits": 0} for n in ("lot", "top")},
            "lines": {},
        }
        spec = StreamSpec(id="s", url="rtsp://c/x", model=MODEL, zones=ZONES)  # type: ignore[arg-type]
        analytics = Analytics(spec.zone_objects(), [])
        mask = np.zeros((H, W), np.uint8)
        mask[40:50, 120:130] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        analytics.update([Tracked(1, "car", 2, (120.0, 40.0, 130.0, 50.0), rle)], 0.0, (H, W))
        doc = {"v": 1, "last": "1764000000000-3", "analytics": analytics.state()}
        redis = make_redis(ns_settings)
        try:
            redis.set(tracks_key(stream), json.dumps({**doc, "counts": analytics.counts()}))
        finally:
            redis.close()
        after = client.get(f"/v1/streams/{stream}/analytics").json()
    assert after["last"] == "1764000000000-3"
    assert after["zones"]["lot"] == {"occupancy": 1, "entries": 1, "exits": 0}
    assert after["zones"]["top"] == {"occupancy": 0, "entries": 0, "exits": 0}


def test_viewer_draws_zones_lines_counts_and_track_ids(
    api: tuple[ApiServer, str], ns_settings: Settings, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.integration.test_demo import browser

    server, stream = api
    with server.client() as client:
        assert client.patch(f"/v1/streams/{stream}", json={"lines": LINES}).status_code == 200
    events = walk()
    counts = {
        "zones": {"lot": {"occupancy": 1, "entries": 2, "exits": 1}},
        "lines": {"gate": {"forward": 3, "backward": 4}},
    }
    redis = make_redis(ns_settings)
    driver = browser()
    try:
        redis.set(tracks_key(stream), json.dumps({"v": 1, "last": "1-1", "counts": counts}))
        driver.get(f"{server.url}/viewer?access_token={READ_TOKEN}&stream={stream}")
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script(
                "return window.segstream.lastId && window.segstream.analyticsId"
            )
        )
        add(ns_settings, stream, events)
        height, width = 360, 640  # the frame the viewer draws on
        instances = []
        for track_id, (x0, y0) in ((7, (120, 160)), (12, (420, 200))):
            mask = np.zeros((height, width), np.uint8)
            mask[y0 : y0 + 80, x0 : x0 + 60] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
            box = (float(x0), float(y0), x0 + 60.0, y0 + 80.0)
            instances.append(Instance("car", 2, 0.9, box, (height, width), rle, track_id=track_id))
        now = time.time()
        event = MaskEvent(stream, 1, 0.0, now, now, MODEL, width, height, tuple(instances))
        EventPublisher(redis, 1000).publish([(stream, entry_id(now, 1), encode_event(event))])
        WebDriverWait(driver, 60).until(
            lambda d: (
                int(d.find_element(By.TAG_NAME, "body").get_attribute("data-drawn") or 0) >= 1
                and int(d.find_element(By.TAG_NAME, "body").get_attribute("data-analytics") or 0)
                == len(events)
                and "2 entries" in d.find_element(By.ID, "counts").text
            )
        )
        seen = driver.execute_script("return window.segstream")
        assert seen["tracks"] == [7, 12]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#log div")) == min(12, len(events))
        table = driver.find_element(By.ID, "counts").text
        assert "zone lot" in table and "1 in" in table and "zone top" in table
        assert "line gate" in table and "3 forward" in table and "4 backward" in table
        # drawn on the frame: the zones' outline colour, the line's, and the labels with ids
        colours = driver.execute_script(
            """
            const c = document.getElementById('view');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let zone = 0, line = 0;
            for (let i = 0; i < d.length; i += 4) {
              if (d[i] === 80 && d[i + 1] === 170 && d[i + 2] === 255) zone++;
              if (d[i] === 255 && d[i + 1] === 200 && d[i + 2] === 40) line++;
            }
            return [zone, line];
            """
        )
        assert colours[0] > 50 and colours[1] > 50, colours
        driver.save_screenshot(str(tmp_path / "viewer.png"))
    finally:
        driver.quit()
        redis.close()


def test_cli_and_sdk(api: tuple[ApiServer, str], ns_settings: Settings) -> None:
    """``segstream streams add|patch|counts`` with ``--zone``/``--line``, a bad zone named as
    ``zones[0].polygon``; the SDK's analytics subscription, filtered and resumed."""
    import asyncio
    import os
    import subprocess
    import sys

    from services.client import AsyncClient, Client
    from tests.integration.api_server import WRITE_TOKEN
    from tests.integration.workers import ROOT

    server, stream = api
    env = {
        **os.environ,
        **ns_settings.env(),
        "SEGSTREAM_API_URL": server.url,
        "SEGSTREAM_API_TOKEN": WRITE_TOKEN,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "streams", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    other = f"cam-{uuid.uuid4().hex[:8]}"
    zone, line = "--zone=door:0,0,0.5,0,0.5,1:0.3:20", "--line=gate:0.1,0.5,0.9,0.5"
    added = cli("add", "rtsp://c/y", "--id", other, zone, line)
    assert added.returncode == 0, added.stderr
    shown = json.loads(cli("show", other).stdout)
    assert shown["zones"] == [
        {
            "name": "door",
            "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0]],
            "min_fraction": 0.3,
            "loiter_s": 20.0,
        }
    ]
    assert shown["lines"] == [{"name": "gate", "a": [0.1, 0.5], "b": [0.9, 0.5]}]
    bad = cli("patch", other, "--zone=x:0.1,0.1,0.4,0.4,0.4,0.1,0.1,0.4")
    assert bad.returncode == 1 and "422" in bad.stderr and "zones[0].polygon" in bad.stderr
    assert cli("patch", other, "--no-lines").returncode == 0
    assert json.loads(cli("show", other).stdout)["lines"] == []
    counts = json.loads(cli("counts", other).stdout)
    assert counts["zones"] == {"door": {"occupancy": 0, "entries": 0, "exits": 0}}

    events = walk()
    ids = add(ns_settings, stream, events)
    crossings = [(i, e) for i, e in zip(ids, events, strict=True) if e["type"] == "line.cross"]
    with Client(server.url, READ_TOKEN) as client:
        got = []
        for item in client.subscribe_analytics(stream, from_id="0-0", types=["line.cross"]):
            got.append(item)
            if len(got) == 2:
                break
        for item in client.subscribe_analytics(
            stream, from_id=got[-1].id, types=["line.cross"], receive_timeout_s=3
        ):
            got.append(item)
        assert client.analytics(stream)["zones"]["lot"]["entries"] == 0  # no document yet
    assert [(g.id, g.event.line, g.event.direction) for g in got] == [
        (i, e["line"], e["direction"]) for i, e in crossings
    ]

    async def in_lot() -> list[tuple[str, str]]:
        async with AsyncClient(server.url, READ_TOKEN) as client:
            subscription = client.subscribe_analytics(
                stream, from_id="0-0", zones=["lot"], labels=["car"], receive_timeout_s=3
            )
            return [(item.id, item.event.type) async for item in subscription]

    assert asyncio.run(in_lot()) == [
        (i, e["type"])
        for i, e in zip(ids, events, strict=True)
        if e.get("zone") == "lot" and e["label"] == "car"
    ]
