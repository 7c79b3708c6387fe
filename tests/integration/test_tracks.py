"""Identities through the service: tracking documents written by the publish script with their
events (a real Redis), and a segment worker killed mid-stream whose successor continues the
same tracks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from segcore.data import synthetic
from services.common.events import MaskEvent
from services.common.metrics import sample_value
from services.common.redis import (
    EventPublisher,
    analytics_key,
    entry_id,
    make_redis,
    masks_key,
    tracks_key,
)
from services.common.settings import Settings
from services.common.streams import LineSpec, StreamSpec, ZoneSpec, put_stream
from services.segment.tracks import StreamTracks
from tests.integration.workers import Worker, events, settled, wait_events, wait_for

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
SIZE = (240, 320)
FRAMES = 150


def test_the_document_and_analytics_are_written_with_new_events_only(
    settings: Settings, unique: str
) -> None:
    client = make_redis(settings)
    stream_id = f"doc-{unique}"
    publisher = EventPublisher(client, maxlen=100)
    try:
        first = [(stream_id, "1000-1", b'{"e":1}')]
        assert publisher.publish(first, tracks=[(b'{"doc":1}', (b'{"a":1}', b'{"a":2}'))]) == [True]
        # The same frame again (a redelivery), with another document: nothing changes.
        assert publisher.publish(first, tracks=[(b'{"doc":2}', (b'{"a":3}',))]) == [False]
        assert client.get(tracks_key(stream_id)) == b'{"doc":1}'
        added = client.xrange(analytics_key(stream_id))
        assert [fields[b"event"] for _, fields in added] == [b'{"a":1}', b'{"a":2}']
        # A newer frame without a document (not tracked) keeps the one there.
        assert publisher.publish([(stream_id, "1001-2", b'{"e":2}')], tracks=[(None, ())]) == [True]
        assert client.get(tracks_key(stream_id)) == b'{"doc":1}'
        assert client.xlen(masks_key(stream_id)) == 2
        assert client.ttl(tracks_key(stream_id)) == -1  # lives as long as the stream
    finally:
        client.delete(masks_key(stream_id), tracks_key(stream_id), analytics_key(stream_id))
        client.close()


def test_a_removed_streams_document_keeps_its_expiry_through_later_events(
    settings: Settings, unique: str
) -> None:
    """Frames still in flight when a stream is removed are published after the ingest
    worker set its keys to expire: the document they write keeps that expiry (SET would
    clear it, and the removed stream's document would never go)."""
    client = make_redis(settings)
    stream_id = f"expiring-{unique}"
    publisher = EventPublisher(client, maxlen=100)
    try:
        assert publisher.publish([(stream_id, "1000-1", b"{}")], tracks=[(b'{"doc":1}', ())]) == [
            True
        ]
        assert client.ttl(tracks_key(stream_id)) == -1
        for key in (masks_key(stream_id), tracks_key(stream_id), analytics_key(stream_id)):
            client.expire(key, 3600, lt=True)  # the stream removed (services/ingest/worker.py)
        late = [(stream_id, "1001-2", b"{}")]
        assert publisher.publish(late, tracks=[(b'{"doc":2}', (b'{"a":1}',))]) == [True]
        assert client.get(tracks_key(stream_id)) == b'{"doc":2}'
        for key in (masks_key(stream_id), tracks_key(stream_id), analytics_key(stream_id)):
            assert 0 < client.ttl(key) <= 3600, key
    finally:
        client.delete(masks_key(stream_id), tracks_key(stream_id), analytics_key(stream_id))
        client.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "tracks.mp4"
    synthetic.write_video(path, seed=5, num_frames=FRAMES, size=SIZE, fps=15)
    return path


LINES = [LineSpec(name="middle", a=(0.5, 0.0), b=(0.5, 1.0))]
ZONES = [ZoneSpec(name="left", polygon=((0.0, 0.0), (0.4, 0.0), (0.4, 1.0), (0.0, 1.0)))]


def replayed(published: list[MaskEvent]) -> tuple[list[list[int | None]], list[tuple]]:
    """The identities and analytics events one uninterrupted tracker gives the published
    instances."""
    plain = [
        dataclasses.replace(
            e, instances=tuple(dataclasses.replace(i, track_id=None) for i in e.instances)
        )
        for e in published
    ]
    spec = StreamSpec(id="x", url="x.mp4", model=MODEL, zones=ZONES, lines=LINES)
    tracks = StreamTracks(
        lambda ids: {},
        lambda _s: (spec.zone_objects(), spec.line_objects()),
        media_time=lambda _s: not spec.live and not spec.realtime,  # as the segment worker
    )
    frames = tracks.track(plain)
    return [[i.track_id for i in f.event.instances] for f in frames], [
        summary(body) for f in frames for body in f.analytics_bodies
    ]


def summary(body: dict) -> tuple:
    return tuple(body.get(k) for k in ("seq", "type", "track_id", "zone", "line", "direction"))


def test_a_killed_workers_successor_continues_its_tracks(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    video: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    first = spawn("segment", "--model", MODEL, "--batch-size", "4")
    spawn("ingest")
    stream_id = f"tracks-{unique}"
    spec = StreamSpec(id=stream_id, url=str(video), model=MODEL, fps=30, zones=ZONES, lines=LINES)
    put_stream(ns_settings, spec)
    client: redis.Redis = make_redis(ns_settings)
    try:
        wait_events(client, stream_id, 40, 90)
        first.kill()
        killed_at = len(events(client, stream_id))
        assert killed_at < FRAMES, "the worker finished before it could be killed"
        second = spawn("segment", "--model", MODEL, "--batch-size", "4")
        got = wait_events(client, stream_id, FRAMES, 120)
        metrics = wait_for(lambda: settled(second), 30, "the second worker's last batch counted")
        document = wait_for(
            lambda: client.get(tracks_key(stream_id)), 10, "the stream's tracking document"
        )
        analytics = [
            summary(json.loads(fields[b"event"]))
            for _, fields in client.xrange(analytics_key(stream_id))
        ]
    finally:
        client.close()
    published = [e for _, e in got]
    assert [e.seq for e in published] == list(range(FRAMES))  # every frame, once
    ids = [[i.track_id for i in e.instances] for e in published]
    # The successor went on from the document of the last event published before the kill:
    # the identities and the zone and line events are those one uninterrupted tracker and
    # analytics give the same instances, each event once.
    expected_ids, expected_analytics = replayed(published)
    assert ids == expected_ids
    assert analytics == expected_analytics
    assert any(a[1] == "line.cross" for a in analytics) and any(
        a[1] == "zone.enter" for a in analytics
    )
    before = {i for frame in ids[killed_at - 5 : killed_at] for i in frame if i is not None}
    after = {i for frame in ids[killed_at : killed_at + 5] for i in frame if i is not None}
    assert before & after, "no track seen before the kill went on after it"
    doc = json.loads(document)
    forward = [a for a in analytics if a[1] == "line.cross" and a[5] == "forward"]
    assert doc["counts"]["lines"]["middle"]["forward"] == len(forward)
    # The successor counted in its metrics the events of the frames it published.
    for direction in ("forward", "backward"):
        crossed = [
            a for a in analytics if a[0] >= killed_at and a[1] == "line.cross" and a[5] == direction
        ]
        assert sample_value(
            metrics,
            "segstream_line_crossings_total",
            stream=stream_id,
            line="middle",
            direction=direction,
        ) == len(crossed)
    entered = [a for a in analytics if a[0] >= killed_at and a[1] == "zone.enter"]
    assert sample_value(
        metrics, "segstream_zone_events_total", stream=stream_id, zone="left", type="enter"
    ) == len(entered)
    assert doc["last"] == entry_id(published[-1].captured_at, published[-1].seq)
