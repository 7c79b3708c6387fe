"""The API's view of the stream registry: every partition of the compacted registry topic
read from the beginning by a thread (no consumer group: every API replica sees every
stream), kept current as records arrive; writes go to the topic and are applied to the view
at once, so a client reads its own writes."""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaProducer, TopicPartition
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

# A write the registry has not acknowledged within this long fails, and is then never sent:
# the producer gives a record up after DELIVERY_TIMEOUT_MS, and waiting past that gets a
# definite answer, so a failed write is one that was not made.
DELIVERY_TIMEOUT_MS = 15_000
REQUEST_TIMEOUT_MS = 10_000


class RegistryUnavailable(Exception):
    """The registry topic did not acknowledge a write; the message says why."""


class StreamTable:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = registry_topic(settings)
        self._specs: dict[str, StreamSpec] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.caught_up = threading.Event()
        self._synced = threading.Condition(self._lock)
        self._asked = 0  # sync() calls so far
        self._answered = 0  # the last of them the view has caught up with
        self.connected = False
        bootstrap_topics(settings, base_topics(settings))
        # made by the first write: a view that only reads (a segment worker's) has none
        self._producer: KafkaProducer | None = None
        self._producer_lock = threading.Lock()
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
        ends: dict[TopicPartition, int] | None = None  # offsets to reach (start, sync())
        goal = 0  # the sync() call ``ends`` were read for
        while not self._stop.is_set():
            try:
                with self._lock:
                    asked = self._asked
                if ends is None or asked > goal:
                    ends, goal = self.consumer.end_offsets(self.partitions), asked
                if not self._reached(ends) or goal <= self._answered:
                    for records in self.consumer.poll(timeout_ms=100).values():
                        for record in records:
                            self._apply(record.key, record.value)
                reached = self._reached(ends)
                self.connected = True
            except KafkaError as exc:
                self.connected = False
                log.warning("registry read failed: %s", exc)
                self._stop.wait(1)
                continue
            if reached:
                self.caught_up.set()
                with self._synced:
                    self._answered = goal
                    self._synced.notify_all()

    def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all(self.consumer.position(tp) >= end for tp, end in ends.items())

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return self.caught_up.wait(timeout)

    def sync(self, timeout: float = 10.0) -> bool:
        """Wait until the view holds every record the registry topic had when called (end
        offsets read after the call); False when it could not within ``timeout`` s."""
        with self._synced:
            self._asked += 1
            asked = self._asked
            return self._synced.wait_for(lambda: self._answered >= asked, timeout)

    def get(self, stream_id: str) -> StreamSpec | None:
        with self._lock:
            return self._specs.get(stream_id)

    def all(self) -> list[StreamSpec]:
        with self._lock:
            return sorted(self._specs.values(), key=lambda s: s.id)

    def _writer(self) -> KafkaProducer:
        with self._producer_lock:
            if self._producer is None:
                self._producer = make_producer(
                    self.settings,
                    max_block_ms=10_000,
                    request_timeout_ms=REQUEST_TIMEOUT_MS,
                    delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
                )
            return self._producer

    def _write(self, key: bytes, value: bytes | None) -> None:
        """Send one record and wait for the registry's acknowledgement; raises
        :class:`RegistryUnavailable` when it does not come (the record is then not sent)."""
        try:
            future = self._writer().send(self.topic, key=key, value=value)
            future.get(timeout=DELIVERY_TIMEOUT_MS / 1000 + 15)
        except KafkaError as exc:
            raise RegistryUnavailable(type(exc).__name__) from None

    def put(self, spec: StreamSpec) -> None:
        """Write ``spec`` and apply it to the view; RegistryUnavailable when not written."""
        key, value = spec.to_record()
        self._write(key, value)
        with self._lock:
            self._specs[spec.id] = spec

    def delete(self, stream_id: str) -> None:
        """Write the stream's tombstone and apply it; RegistryUnavailable when not written."""
        self._write(stream_id.encode(), None)
        with self._lock:
            self._specs.pop(stream_id, None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.consumer.close()
        with self._producer_lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
        time.sleep(0)
