"""Failures on the data path, each checked by what ends up in Redis: a segment worker killed
mid-stream, an ingest worker killed, garbage on the frames topic, Redis and the Kafka broker
restarted under running workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from segcore.data import synthetic
from services.common.frames import encode_frame
from services.common.kafka import dlq_topic, frames_spec, make_consumer, make_producer
from services.common.metrics import sample_value
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from services.infra import Infra
from tests.integration.workers import (
    Worker,
    events,
    settled,
    status,
    wait_events,
    wait_for,
    wait_state,
)

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
SIZE = (240, 320)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "long.mp4"
    synthetic.write_video(path, seed=5, num_frames=150, size=SIZE, fps=15)
    return path


def test_segment_worker_killed_mid_stream_every_frame_once(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    long_video: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    first = spawn("segment", "--model", MODEL, "--batch-size", "4")
    spawn("ingest")
    stream_id = f"kill-seg-{unique}"
    # Every one of the 150 frames is sampled (fps above the file's), no latency budget.
    put_stream(ns_settings, StreamSpec(id=stream_id, url=str(long_video), model=MODEL, fps=30))
    client = make_redis(ns_settings)
    try:
        wait_events(client, stream_id, 20, 90)
        first.kill()
        killed_at = len(events(client, stream_id))
        assert killed_at < 150, "the worker finished before it could be killed"
        second = spawn("segment", "--model", MODEL, "--batch-size", "4")
        wait_events(client, stream_id, 150, 120)
        # The stream's frames share one partition (keyed by stream id), so the redelivered
        # ones came before the last frame: once its event is in Redis, every frame has been
        # consumed. Wait for the batch that held it to be counted (consumed is counted before
        # the batch runs, published and duplicates after).
        text = wait_for(lambda: settled(second), 30, "the second worker's last batch counted")
        got = events(client, stream_id)
    finally:
        client.close()
    assert [e.seq for _, e in got] == list(range(150))
    assert len({entry for entry, _ in got}) == 150
    assert sample_value(text, "segstream_events_published_total") == 150 - killed_at
    assert sample_value(text, "segstream_frames_consumed_total") >= 150 - killed_at


def test_ingest_worker_killed_streams_move_within_30s(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    long_video: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    spawn("segment", "--model", MODEL)
    ingests = {
        name: spawn("ingest", "--worker-id", name, name=name) for name in ("ingest-a", "ingest-b")
    }
    for worker in ingests.values():  # both in the group before the stream comes
        wait_for(lambda w=worker: "partitions assigned" in w.log(), 60, f"{worker.name} joined")
    stream_id = f"kill-ing-{unique}"
    spec = StreamSpec(
        id=stream_id, url=str(long_video), model=MODEL, fps=5, realtime=True, loop=True
    )
    put_stream(ns_settings, spec)
    client = make_redis(ns_settings)
    try:
        running = wait_state(client, stream_id, {"running"}, 60)
        owner = ingests[running["worker"]]
        wait_events(client, stream_id, 3, 60)
        # the status (and the seq in it) is written at most once a second
        wait_for(lambda: int(status(client, stream_id).get("seq", -1)) >= 3, 15, "seq in status")
        owner.kill()
        killed = time.time()

        def resumed() -> dict[str, str] | None:
            now = status(client, stream_id)
            return (
                now
                if now.get("worker") != running["worker"] and now["state"] == "running"
                else None
            )

        # the stream has 30 s from the kill to move: the wait fails past that
        moved = wait_for(resumed, 30, "the stream to run on the other worker")
        assert moved["worker"] == next(n for n in ingests if n != running["worker"])
        fresh = wait_for(
            lambda: [e for _, e in events(client, stream_id) if e.captured_at > killed],
            30,
            "events captured by the new owner",
        )
        # the new owner goes on from the sequence number the stream's status held
        assert fresh[0].seq > 0
    finally:
        client.close()


def test_garbage_on_the_frames_topic_goes_to_the_dlq(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    long_video: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    worker = spawn("segment", "--model", MODEL)
    topic = frames_spec(ns_settings, MODEL).name
    client = make_redis(ns_settings)
    producer = make_producer(ns_settings)
    try:
        wait_for(lambda: "segment worker started" in worker.log(), 60, "the segment worker")
        producer.send(topic, key=b"junk-1", value=b"\x00\xffgarbage", headers=[])
        headers = [
            ("v", b"1"),
            ("seq", b"0"),
            ("pts", b"0.0"),
            ("captured_at", str(time.time()).encode()),
            ("width", b"320"),
            ("height", b"240"),
            ("encoding", b"jpeg"),
        ]
        # registered: the worker drops the frames of unregistered streams undecoded
        put_stream(ns_settings, StreamSpec(id="junk-2", url="rtsp://127.0.0.1:9/none", model=MODEL))
        producer.send(topic, key=b"junk-2", value=b"not a jpeg at all", headers=headers)
        producer.flush(timeout=30)
        spawn("ingest")
        stream_id = f"after-junk-{unique}"
        put_stream(ns_settings, StreamSpec(id=stream_id, url=str(long_video), model=MODEL, fps=5))
        got = wait_events(client, stream_id, 50, 90)
    finally:
        producer.close()
        client.close()
    assert [e.seq for _, e in got] == list(range(50))
    assert worker.alive()
    consumer = make_consumer(ns_settings, dlq_topic(ns_settings), consumer_timeout_ms=10_000)
    try:
        dead = {r.key: dict(r.headers) for r in consumer}
    finally:
        consumer.close()
    assert set(dead) == {b"junk-1", b"junk-2"}
    assert dead[b"junk-1"]["dlq_reason"] == b"malformed"
    assert b"missing header 'v'" in dead[b"junk-1"]["dlq_detail"]
    assert dead[b"junk-2"]["dlq_reason"] == b"bad-image"
    assert dead[b"junk-2"]["dlq_topic"] == topic.encode()
    text = worker.metrics()
    assert sample_value(text, "segstream_dlq_total", reason="malformed") == 1
    assert sample_value(text, "segstream_dlq_total", reason="bad-image") == 1


def test_stale_frames_are_dropped_and_fresh_ones_batched(
    ns_settings: Settings, spawn: Callable[..., Worker], unique: str, compiled_ops: None
) -> None:
    worker = spawn("segment", "--model", MODEL, "--batch-size", "8", "--batch-deadline-ms", "200")
    wait_for(lambda: "segment worker started" in worker.log(), 60, "the segment worker")
    topic = frames_spec(ns_settings, MODEL).name
    for stream in (f"late-{unique}", f"cam1-{unique}", f"cam2-{unique}"):  # else dropped
        put_stream(ns_settings, StreamSpec(id=stream, url="rtsp://127.0.0.1:9/none", model=MODEL))
    producer = make_producer(ns_settings)
    now = time.time()
    try:
        for index in range(12):  # one camera far behind, two in time, interleaved
            stale = index % 3 == 0
            stream = f"late-{unique}" if stale else f"cam{index % 3}-{unique}"
            rgb, _ = synthetic.frame(9, index, SIZE)
            captured = now - 30 if stale else time.time()
            message = encode_frame(stream, index, index / 15, captured, rgb, budget_ms=5000)
            key, value, headers = message.to_record()
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()
    wait_for(
        lambda: sample_value(worker.metrics(), "segstream_frames_consumed_total") >= 12,
        60,
        "12 frames consumed",
    )
    client = make_redis(ns_settings)
    try:
        wait_for(
            lambda: sum(len(events(client, f"cam{k}-{unique}")) for k in (1, 2)) == 8,
            30,
            "8 fresh events",
        )
        assert events(client, f"late-{unique}") == []
    finally:
        client.close()
    text = worker.metrics()
    assert sample_value(text, "segstream_frames_dropped_total", reason="latency-budget") == 4
    assert sample_value(text, "segstream_batch_size_sum") == 8
    assert sample_value(text, "segstream_batch_size_count") < 8  # frames were batched


def test_redis_and_kafka_restarts_workers_recover(
    own_infra: Infra, tmp_path: Path, long_video: Path, compiled_ops: None
) -> None:
    settings = own_infra.settings
    segment = Worker(settings, ["segment", "--model", MODEL], tmp_path, "segment")
    ingest = Worker(settings, ["ingest"], tmp_path, "ingest")
    stream_id = "restarts"
    put_stream(
        settings,
        StreamSpec(id=stream_id, url=str(long_video), model=MODEL, fps=5, realtime=True, loop=True),
    )
    kafka, redis_server = own_infra.components[0], own_infra.components[1]
    try:
        client = make_redis(settings)
        wait_events(client, stream_id, 5, 90)
        client.close()

        redis_server.proc.stop()
        # both workers run into the outage: the segment worker's publish and the ingest
        # worker's status write fail (and are retried)
        wait_for(lambda: "publish failed" in segment.log(), 30, "a failed publish")
        wait_for(lambda: "status not written" in ingest.log(), 30, "a failed status write")
        redis_server.start()
        redis_server.wait_ready()
        restarted = time.time()
        client = make_redis(settings)
        wait_for(
            lambda: [e for _, e in events(client, stream_id) if e.captured_at > restarted],
            60,
            "events after the Redis restart",
        )
        wait_state(client, stream_id, {"running"}, 30)  # the status is written again

        kafka.proc.stop()
        # the camera goes on (the stream's status counts its frames) while its frames
        # reach no segment worker: 2 s of frames (at 5 fps) captured and not in Redis
        wait_for(lambda: frames_behind(client, stream_id) >= 10, 30, "the pipeline to stall")
        kafka.start()
        kafka.wait_ready()
        restarted = time.time()
        wait_for(
            lambda: [e for _, e in events(client, stream_id) if e.captured_at > restarted + 1],
            90,
            "events after the Kafka restart",
        )
        client.close()
        assert segment.alive() and ingest.alive()
    finally:
        segment.stop(timeout=10)
        ingest.stop(timeout=10)


def frames_behind(client: redis.Redis, stream_id: str) -> int:
    """How many frames the stream's status counts past its newest event in Redis."""
    got = events(client, stream_id)
    newest = got[-1][1].seq if got else -1
    return int(status(client, stream_id).get("seq", -1)) - newest
