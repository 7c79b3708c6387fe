"""Round trips through the real broker and the real Redis server."""

from __future__ import annotations

import time

import pytest
import redis

from services.common.kafka import (
    DLQ_TOPIC,
    REGISTRY_TOPIC,
    TopicSpec,
    bootstrap_topics,
    make_admin,
    make_consumer,
    make_producer,
)
from services.common.redis import make_redis, masks_key
from services.common.settings import Settings

pytestmark = pytest.mark.integration


def test_base_topics_exist_with_their_settings(settings: Settings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = make_admin(settings)
    try:
        assert {REGISTRY_TOPIC, DLQ_TOPIC} <= set(admin.list_topics())
        described = admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, REGISTRY_TOPIC),
                ConfigResource(ConfigResourceType.TOPIC, DLQ_TOPIC),
            ]
        )["topic"]
        assert described[REGISTRY_TOPIC]["cleanup.policy"]["value"] == "compact"
        dlq_max = described[DLQ_TOPIC]["max.message.bytes"]["value"]
        assert int(dlq_max) == settings.frame_max_bytes
    finally:
        admin.close()


def test_message_round_trip(settings: Settings, unique: str) -> None:
    topic = f"test.roundtrip.{unique}"
    assert bootstrap_topics(settings, [TopicSpec(topic, 3)]) == [topic]
    assert bootstrap_topics(settings, [TopicSpec(topic, 3)]) == []
    payloads = [(f"cam-{i % 3}".encode(), f"frame {i}".encode() * 1000) for i in range(30)]
    producer = make_producer(settings)
    for key, value in payloads:
        producer.send(topic, key=key, value=value, headers=[("seq", str(len(value)).encode())])
    producer.flush(timeout=30)
    producer.close()

    consumer = make_consumer(settings, topic, group_id=f"g-{unique}")
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 30
    while len(got) < len(payloads) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend((r.key, r.value) for r in records)
    consumer.commit()
    consumer.close()
    assert sorted(got) == sorted(payloads)
    # Messages of one key keep their order (one key, one partition).
    for key in {k for k, _ in payloads}:
        assert [v for k, v in got if k == key] == [v for k, v in payloads if k == key]


def test_large_frame_fits(settings: Settings, unique: str) -> None:
    topic = f"test.large.{unique}"
    bootstrap_topics(
        settings, [TopicSpec(topic, 1, {"max.message.bytes": str(settings.frame_max_bytes)})]
    )
    frame = bytes(range(256)) * (4 * 1024 * 1024 // 256)  # 4 MiB: a raw 1080p-ish frame
    producer = make_producer(settings)
    producer.send(topic, key=b"cam", value=frame).get(timeout=30)
    producer.close()
    consumer = make_consumer(settings, topic, group_id=f"g-{unique}")
    deadline = time.monotonic() + 30
    values: list[bytes] = []
    while not values and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.close()
    assert values == [frame]


def test_redis_stream_entry(settings: Settings, unique: str) -> None:
    client = make_redis(settings)
    key = masks_key(f"test-{unique}")
    try:
        entry_id = client.xadd(key, {"event": b'{"v": 1}'}, id="1764000000123-7")
        assert entry_id == b"1764000000123-7"
        # The same id again is refused: a redelivered frame cannot publish twice.
        with pytest.raises(redis.ResponseError):
            client.xadd(key, {"event": b'{"v": 1}'}, id="1764000000123-7")
        [(got_id, fields)] = client.xrange(key)
        assert got_id == entry_id and fields == {b"event": b'{"v": 1}'}
    finally:
        client.delete(key)
        client.close()


def test_redis_requires_password(settings: Settings) -> None:
    anonymous = redis.Redis(host=settings.host, port=settings.redis_port)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
    finally:
        anonymous.close()
