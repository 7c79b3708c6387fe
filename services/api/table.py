"""The API's view of the stream registry: every partition of the compacted registry topic
read from the beginning by a thread (no consumer group: every API replica sees every
stream), kept current as records arrive; writes go to the topic and are applied to the view
at once, so a client reads its own writes."""

from __future__ import annotations

import logging
import threading
import time

from kafka import TopicPartition
from kafka.errors import KafkaError

from services.common.events import DecodeError
from services.common.kafka import (
    base_topics,
    bootstrap_topics,
    make_consumer,
    make_producer,
    registry_topic,
)
from services.common.settings import Settings
from services.common.streams import StreamSpec, decode_spec

log = logging.getLogger("segstream.api")


class StreamTable:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = registry_topic(settings)
        self._specs: dict[str, StreamSpec] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self.connected = False
        bootstrap_topics(settings, base_topics(settings))
        self.producer = make_producer(settings, max_block_ms=10_000)
        self.consumer = make_consumer(settings, enable_auto_commit=False, group_id=None)
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.partitions)
        self.consumer.seek_to_beginning(*self.partitions)
        self._thread = threading.Thread(target=self._run, name="registry-view", daemon=True)
        self._thread.start()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        stream_id = key.decode(errors="replace")
        with self._lock:
            if value is None:
                self._specs.pop(stream_id, None)
                return
            try:
                self._specs[stream_id] = decode_spec(key, value)
            except DecodeError as exc:
                log.error("bad registry record: %s", exc, extra={"stream_id": stream_id})

    def _run(self) -> None:
        ends: dict[TopicPartition, int] | None = None
        while not self._stop.is_set():
            try:
                if ends is None:
                    ends = self.consumer.end_offsets(self.partitions)
                batches = self.consumer.poll(timeout_ms=500)
                self.connected = True
            except KafkaError as exc:
                self.connected = False
                log.warning("registry read failed: %s", exc)
                self._stop.wait(1)
                continue
            for records in batches.values():
                for record in records:
                    self._apply(record.key, record.value)
            if (
                not self.caught_up.is_set()
                and ends is not None
                and all(self.consumer.position(tp) >= end for tp, end in ends.items())
            ):
                self.caught_up.set()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return self.caught_up.wait(timeout)

    def get(self, stream_id: str) -> StreamSpec | None:
        with self._lock:
            return self._specs.get(stream_id)

    def all(self) -> list[StreamSpec]:
        with self._lock:
            return sorted(self._specs.values(), key=lambda s: s.id)

    def put(self, spec: StreamSpec) -> None:
        key, value = spec.to_record()
        self.producer.send(self.topic, key=key, value=value).get(timeout=30)
        with self._lock:
            self._specs[spec.id] = spec

    def delete(self, stream_id: str) -> None:
        self.producer.send(self.topic, key=stream_id.encode(), value=None).get(timeout=30)
        with self._lock:
            self._specs.pop(stream_id, None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.consumer.close()
        self.producer.close(timeout=5)
        time.sleep(0)
