"""Crafted records sent to a running segment worker, as a hostile producer or a broken camera
would write them: each lands in the DLQ with its reason (or, for a stream nobody registered,
is dropped and counted), the worker stays alive, and a healthy stream beside them keeps every
event exactly once. And a worker that dies on an exception mid-batch commits only what it
published."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest
import torch
from prometheus_client import CollectorRegistry
from torch import Tensor, nn

from segcore.data import synthetic
from services.common.frames import encode_frame
from services.common.kafka import (
    base_topics,
    bootstrap_topics,
    dlq_topic,
    frames_spec,
    make_consumer,
    make_producer,
)
from services.common.metrics import PipelineMetrics, sample_value
from services.common.redis import make_redis, masks_key
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from services.segment.worker import SegmentOptions, SegmentWorker
from tests.integration.workers import Worker, events, wait_events, wait_for

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
SIZE = (240, 320)
NOWHERE = "rtsp://127.0.0.1:9/none"  # no ingest worker runs in these tests: never opened

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


def good_frame(stream_id: str, seq: int, captured_at: float | None = None) -> Record:
    rgb, _ = synthetic.frame(7, seq, SIZE)
    captured = time.time() if captured_at is None else captured_at
    message = encode_frame(stream_id, seq, seq / 5, captured, rgb)
    return message.to_record()


def crafted(base: Record, case: str, jpeg: bytes | None = None, **headers: bytes) -> Record:
    """``base`` with some headers replaced (and a ``case`` header naming it), or its image."""
    key, value, fields = base
    changed = {**dict(fields), **headers, "case": case.encode()}
    return key, jpeg if jpeg is not None else value, list(changed.items())


def declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` whose start-of-frame segment declares another size."""
    at = jpeg.index(b"\xff\xc0") + 5  # marker, length (2), precision (1)
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4 :]


def test_crafted_records_go_to_the_dlq_beside_a_healthy_stream(
    ns_settings: Settings, spawn: Callable[..., Worker], unique: str, compiled_ops: None
) -> None:
    worker = spawn("segment", "--model", MODEL, "--batch-size", "4")
    healthy, wrongtype, zero = (f"{n}-{unique}" for n in ("healthy", "wrongtype", "zero"))
    stranger = f"stranger-{unique}"
    client = make_redis(ns_settings)
    client.set(masks_key(wrongtype), "not a stream")  # XADD to it fails: WRONGTYPE
    wait_for(lambda: "segment worker started" in worker.log(), 60, "the segment worker")
    base = good_frame(healthy, 1000)
    bomb = declaring(base[1], 20000, 20000)
    cases: dict[str, tuple[Record, str]] = {
        "nan-captured-at": (crafted(base, "nan-captured-at", captured_at=b"nan"), "malformed"),
        "inf-pts": (crafted(base, "inf-pts", pts=b"inf"), "malformed"),
        "huge-seq": (crafted(base, "huge-seq", seq=str(10**25).encode()), "malformed"),
        "bomb": (crafted(base, "bomb", bomb), "bad-image"),
        "huge-image": (
            crafted(base, "huge-image", bomb, width=b"20000", height=b"20000"),
            "too-large",
        ),
        "huge-source": (
            crafted(base, "huge-source", frame_width=b"6000", frame_height=b"6000"),
            "too-large",
        ),
        "wrongtype": (crafted(good_frame(wrongtype, 0), "wrongtype"), "rejected"),
        "zero-id": (crafted(good_frame(zero, 0, captured_at=0.0), "zero-id"), "rejected"),
    }
    topic = frames_spec(ns_settings, MODEL).name
    producer = make_producer(ns_settings)
    count = 24
    try:
        for stream_id in (wrongtype, zero, healthy):  # registered just before their frames
            put_stream(ns_settings, StreamSpec(id=stream_id, url=NOWHERE, model=MODEL))
        bad = iter(cases.values())
        for seq in range(count):
            key, value, headers = good_frame(healthy, seq)
            producer.send(topic, key=key, value=value, headers=headers)
            if seq % 2 and (case := next(bad, None)) is not None:
                key, value, headers = case[0]
                producer.send(topic, key=key, value=value, headers=headers)
        key, value, headers = good_frame(stranger, 0)
        producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
        got = wait_events(client, healthy, count, 120)
        text = wait_for(
            lambda: (
                t
                if sample_value(t := worker.metrics(), "segstream_dlq_total") >= len(cases)
                and sample_value(t, "segstream_frames_dropped_total", reason="unregistered")
                else None
            ),
            60,
            "every crafted record handled",
        )
        assert events(client, stranger) == [] and events(client, zero) == []
        assert client.type(masks_key(wrongtype)) == b"string"
    finally:
        producer.close()
        client.close()
    assert [e.seq for _, e in got] == list(range(count))
    assert len({entry for entry, _ in got}) == count
    assert worker.alive()
    for reason in ("malformed", "bad-image", "too-large", "rejected"):
        expected = sum(1 for _, r in cases.values() if r == reason)
        assert sample_value(text, "segstream_dlq_total", reason=reason) == expected, reason
    assert sample_value(text, "segstream_frames_dropped_total", reason="unregistered") == 1
    consumer = make_consumer(ns_settings, dlq_topic(ns_settings), consumer_timeout_ms=10_000)
    try:
        dead = {dict(r.headers)["case"].decode(): dict(r.headers) for r in consumer}
    finally:
        consumer.close()
    assert set(dead) == set(cases)
    for name, (_, reason) in cases.items():
        assert dead[name]["dlq_reason"] == reason.encode(), name
        assert dead[name]["dlq_topic"] == topic.encode()
    assert b"must be finite" in dead["nan-captured-at"]["dlq_detail"]
    assert b"DecompressionBombError" in dead["bomb"]["dlq_detail"]
    assert b"source frame 6000x6000" in dead["huge-source"]["dlq_detail"]
    assert b"WRONGTYPE" in dead["wrongtype"]["dlq_detail"]
    assert b"greater than 0-0" in dead["zero-id"]["dlq_detail"]


class FailsOnSecondBatch(nn.Module):
    """A model that finds nothing in its first batch and raises on its second."""

    def __init__(self) -> None:
        super().__init__()
        self.class_names = ["thing"]
        self.weight = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def infer_frames(
        self, frames: Tensor | list[Tensor], mask_format: str = "compact"
    ) -> list[dict[str, Tensor]]:
        """The serving entry (segcore.models.frames): no detection, in the compact format."""
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("the device went away")
        return [
            {
                "scores": torch.zeros(0),
                "labels": torch.zeros(0, dtype=torch.int64),
                "boxes": torch.zeros(0, 4),
                "masks": torch.zeros(0, 1, 28, 28),
                "mask_boxes": torch.zeros(0, 4),
            }
            for _ in frames
        ]


def test_a_worker_dying_mid_batch_commits_only_what_it_published(
    ns_settings: Settings, spawn: Callable[..., Worker], unique: str, compiled_ops: None
) -> None:
    streams = [f"a-{unique}", f"b-{unique}"]
    bootstrap_topics(ns_settings, [*base_topics(ns_settings), frames_spec(ns_settings, MODEL)])
    for stream_id in streams:
        put_stream(ns_settings, StreamSpec(id=stream_id, url=NOWHERE, model=MODEL))
    topic = frames_spec(ns_settings, MODEL).name
    producer = make_producer(ns_settings)
    try:
        for seq in range(6):
            for stream_id in streams:
                key, value, headers = good_frame(stream_id, seq)
                producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()
    model = FailsOnSecondBatch()
    dying = SegmentWorker(
        ns_settings,
        MODEL,
        PipelineMetrics(CollectorRegistry()),
        SegmentOptions(batch_size=4),
        model=model,
        worker_id="dying",
    )
    with pytest.raises(RuntimeError, match="the device went away"):
        dying.run()
    assert model.calls == 2
    client = make_redis(ns_settings)
    try:
        first = sum(len(events(client, s)) for s in streams)
        assert 0 < first < 12  # the first batch was published, the second was not
        spawn("segment", "--model", MODEL, "--batch-size", "4")
        got = {s: [e.seq for _, e in wait_events(client, s, 6, 120)] for s in streams}
    finally:
        client.close()
    assert got == {s: list(range(6)) for s in streams}
