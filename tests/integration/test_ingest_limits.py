"""The ingest worker's limits with real servers: a worker runs at most ``ingest_max_streams``
streams and the rest wait (``pending``, ``worker-full``) until one is removed; a removed
stream's Redis client is closed and its events expire; a looping file is paced; an updated
stream goes on from its last seq, with no repeat and no gap (read from the frames topic,
where the ingest worker's seq are, before any segment worker)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition

from segcore.data import synthetic
from services.common.frames import decode_frame
from services.common.kafka import frames_spec, make_consumer
from services.common.metrics import sample_value
from services.common.redis import make_redis, masks_key, status_key, tracks_key
from services.common.settings import Settings
from services.common.streams import StreamSpec, delete_stream, put_stream
from services.ingest.worker import CLIENT_PREFIX
from tests.integration.workers import Worker, status, wait_for, wait_state

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 15 fps, 64x48."""
    path = tmp_path_factory.mktemp("limits") / "clip.mp4"
    synthetic.write_video(path, seed=5, num_frames=30, size=(48, 64), fps=15)
    return path


def stream_clients(client: redis.Redis) -> set[str]:
    """Names of the connected Redis clients of ingest runners."""
    return {
        str(c["name"]) for c in client.client_list() if str(c["name"]).startswith(CLIENT_PREFIX)
    }


def worker(settings: Settings, tmp_path: Path, name: str, **update: object) -> Worker:
    return Worker(settings.model_copy(update=update), ["ingest"], tmp_path, name)


def test_streams_past_the_limit_wait_and_a_removed_one_is_cleaned_up(
    ns_settings: Settings, tmp_path: Path, clip: Path, unique: str
) -> None:
    ingest = worker(
        ns_settings,
        tmp_path,
        "ingest",
        file_root=clip.parent,
        ingest_max_streams=2,
        deleted_stream_retention_s=120,
    )
    client = make_redis(ns_settings)
    first, second, third = (f"{name}-{unique}" for name in ("first", "second", "third"))
    try:
        for stream_id in (first, second, third):
            # loop without realtime: paced all the same
            spec = StreamSpec(id=stream_id, url=str(clip), model=MODEL, fps=5, loop=True)
            put_stream(ns_settings, spec)
            wait_for(lambda s=stream_id: status(client, s), 60, f"a status of {stream_id}")
        for stream_id in (first, second):
            wait_state(client, stream_id, {"running"}, 60)
        waiting = status(client, third)
        assert (waiting["state"], waiting["reason"]) == ("pending", "worker-full"), waiting
        assert "2 streams" in waiting["message"]
        # the status's rate is over 5 s: a looping file is paced to 5 fps, not decoded flat out
        rate = wait_for(
            lambda: (h := status(client, first)) and float(h["fps"]) > 0 and float(h["fps"]),
            20,
            "a measured frame rate",
        )
        assert rate < 7.5, rate
        wait_for(
            lambda: sample_value(ingest.metrics(), "segstream_streams", state="pending") == 1,
            10,
            "one pending stream in segstream_streams",
        )
        assert stream_clients(client) == {CLIENT_PREFIX + first, CLIENT_PREFIX + second}

        client.xadd(masks_key(first), {"event": b"{}"})  # as a segment worker would
        client.set(tracks_key(first), b"{}")
        delete_stream(ns_settings, first)
        wait_state(client, third, {"running"}, 30)  # room again: the waiting stream starts
        wait_for(lambda: not client.exists(status_key(first)), 10, "the status deleted")
        wait_for(
            lambda: stream_clients(client) == {CLIENT_PREFIX + second, CLIENT_PREFIX + third},
            15,
            "the removed stream's Redis client closed",
        )
        ttl = client.ttl(masks_key(first))
        assert 0 < ttl <= 120, ttl
        assert 0 < client.ttl(tracks_key(first)) <= 120  # the tracking document goes too
        assert client.xlen(masks_key(first)) == 1  # readable until it expires
        assert status(client, second)["state"] == "running"
        assert ingest.alive()
    finally:
        client.close()
        ingest.stop(timeout=10)


def frame_seqs(consumer: KafkaConsumer, stream_id: str, into: list[int]) -> list[int]:
    """Poll ``consumer`` once; append the seq of ``stream_id``'s frames to ``into``."""
    for records in consumer.poll(timeout_ms=200).values():
        for record in records:
            message = decode_frame(record.key, record.value, record.headers)
            if message.stream_id == stream_id:
                into.append(message.seq)
    return into


def test_an_updated_stream_goes_on_from_its_last_seq(
    ns_settings: Settings, tmp_path: Path, clip: Path, unique: str
) -> None:
    ingest = worker(ns_settings, tmp_path, "ingest", file_root=clip.parent)
    stream_id = f"patched-{unique}"
    spec = StreamSpec(id=stream_id, url=str(clip), model=MODEL, fps=10, loop=True, realtime=True)
    topic = frames_spec(ns_settings, MODEL).name
    consumer = make_consumer(ns_settings, group_id=None)
    client = make_redis(ns_settings)
    seqs: list[int] = []
    try:
        put_stream(ns_settings, spec)
        parts = wait_for(lambda: consumer.partitions_for_topic(topic), 60, "the frames topic")
        consumer.assign([TopicPartition(topic, p) for p in parts])
        consumer.seek_to_beginning()
        wait_for(lambda: len(frame_seqs(consumer, stream_id, seqs)) >= 6, 60, "6 frames")
        # Each update replaces the runner within the status hash's second between writes.
        for fps in (8.0, 10.0, 8.0):
            put_stream(ns_settings, spec.model_copy(update={"fps": fps}))
            before = len(seqs)
            wait_for(
                lambda b=before: len(frame_seqs(consumer, stream_id, seqs)) >= b + 6,
                30,
                "frames after the update",
            )
        assert seqs == list(range(len(seqs))), seqs
        updated = [r for r in ingest.log_records() if r.get("stream_id") == stream_id]
        assert sum(r["msg"] == "stream updated" for r in updated) == 3
        # the status follows (written at most once a second)
        wait_for(
            lambda: int(status(client, stream_id).get("seq", -1)) >= seqs[-1],
            15,
            "the status's seq at the last frame read",
        )
        assert ingest.alive()
    finally:
        consumer.close()
        client.close()
        ingest.stop(timeout=10)
