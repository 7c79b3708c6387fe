"""The segment worker of one model: consumer group ``segment-<model>`` on
``segstream.frames.<model>``.

Each cycle takes a batch across streams (up to ``batch_size`` frames, or whatever arrived
within ``batch_deadline_ms`` of the first: no stream, dead or alive, holds a batch back) and
sorts it with :func:`~services.segment.triage.triage` (pure): frames older than their
stream's latency budget are dropped (counted by reason), records that cannot be parsed go to
``segstream.dlq`` with the reason, the rest are segmented. It publishes one event per frame
to Redis (stream entry with an id derived from capture time and seq, pub/sub channel, latest
key; a redelivered frame's entry exists already and is not published again) and only then
commits the offsets: at-least-once delivery, exactly-once events. Redis or Kafka going away
stalls the cycle until they answer; the worker itself never needs a restart.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import torch
from kafka.errors import KafkaError
from torch import nn

import segcore
from services.common.events import encode_event
from services.common.frames import DeadLetter
from services.common.kafka import (
    base_topics,
    bootstrap_topics,
    dlq_topic,
    frames_spec,
    make_consumer,
    make_producer,
    named,
)
from services.common.metrics import PipelineMetrics
from services.common.redis import EventPublisher, entry_id, make_redis
from services.common.settings import Settings
from services.segment.infer import class_names, infer, to_events
from services.segment.triage import triage

log = logging.getLogger("segstream.segment")


def group_of(model: str) -> str:
    return f"segment-{model}"


@dataclass
class SegmentOptions:
    batch_size: int = 8
    batch_deadline_ms: int = 50
    min_score: float = 0.3
    device: str = "cpu"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 2_000
    max_poll_interval_ms: int = 300_000


class SegmentWorker:
    def __init__(
        self,
        settings: Settings,
        model_name: str,
        metrics: PipelineMetrics | None = None,
        options: SegmentOptions | None = None,
        model: nn.Module | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.model_name = model_name
        self.metrics = metrics or PipelineMetrics()
        self.options = options or SegmentOptions()
        if self.options.batch_size < 1 or self.options.batch_deadline_ms < 0:
            raise ValueError("batch_size must be >= 1 and batch_deadline_ms >= 0")
        self.worker_id = worker_id or f"segment-{socket.gethostname()}-{os.getpid()}"
        self.model = model or segcore.build(model_name, device=self.options.device, fuse=True)
        # torch and the model leave a large, long-lived heap: keep it out of the collector's
        # full passes (which otherwise pause the worker for a few hundred ms).
        gc.collect()
        gc.freeze()
        self.names = class_names(self.model)
        self.topic = frames_spec(settings, model_name).name
        self.dlq_topic = dlq_topic(settings)
        bootstrap_topics(settings, [*base_topics(settings), frames_spec(settings, model_name)])
        self.redis = make_redis(settings, socket_timeout=5, health_check_interval=10)
        self.publisher = EventPublisher(
            self.redis, settings.redis_stream_maxlen, frames=settings.preview_frames
        )
        self.dlq = make_producer(settings, max_block_ms=10_000)
        self.consumer = make_consumer(
            settings,
            self.topic,
            group_id=named(settings, group_of(model_name)),
            client_id=self.worker_id,
            session_timeout_ms=self.options.session_timeout_ms,
            heartbeat_interval_ms=self.options.heartbeat_interval_ms,
            max_poll_interval_ms=self.options.max_poll_interval_ms,
        )
        self.halt = threading.Event()
        self._all_published = True  # False once a batch was polled but not published
        self.m = self.model_name
        self.metrics.start_model(self.m)

    # one cycle ----------------------------------------------------------------------------
    def collect(self, idle_timeout_ms: int = 500) -> tuple[list[Any], float]:
        """Records of one batch, and the monotonic time its first record arrived.

        After the first record, the batch takes what is already waiting in Kafka (frames
        that came while the last batch ran: natural batching under load) and waits for more
        only while the consumer is behind, never past ``batch_deadline_ms``: a lone camera
        is not held back for frames that are not coming.
        """
        batch: list[Any] = []
        first_at = 0.0
        size, deadline_s = self.options.batch_size, self.options.batch_deadline_ms / 1000
        while len(batch) < size and not self.halt.is_set():
            if batch:
                remaining = first_at + deadline_s - time.monotonic()
                if remaining <= 0:
                    break
                timeout_ms = max(1, min(5, int(remaining * 1000)))
            else:
                timeout_ms = idle_timeout_ms
            try:
                polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=size - len(batch))
            except KafkaError as exc:
                log.warning("poll failed: %s", exc)
                self.halt.wait(1)
                break
            for records in polled.values():
                batch.extend(records)
            if not batch:
                break
            if not first_at:
                first_at = time.monotonic()
            elif not polled and self._caught_up():
                break
        return batch, first_at

    def _caught_up(self) -> bool:
        """Whether nothing is waiting in the assigned partitions (as of the last fetch)."""
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                return False
            try:
                if self.consumer.position(tp, timeout_ms=100) < high:
                    return False
            except KafkaError:
                return False
        return True

    def dead_letter(self, record: Any, reason: DeadLetter, detail: str) -> None:
        headers = [
            *list(record.headers or []),
            ("dlq_reason", reason.encode()),
            ("dlq_detail", detail.encode(errors="replace")[:1000]),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_worker", self.worker_id.encode()),
        ]
        self.metrics.dlq.labels(self.m, reason).inc()
        log.warning(
            "record sent to the DLQ: %s",
            detail,
            extra={"reason": reason, "partition": record.partition, "offset": record.offset},
        )
        try:
            self.dlq.send(self.dlq_topic, key=record.key, value=record.value, headers=headers).get(
                timeout=30
            )
        except KafkaError as exc:
            log.error("DLQ write failed (record skipped): %s", exc)

    def step(self) -> int:
        """One batch: returns the number of events published."""
        records, first_at = self.collect()
        if not records:
            self._lag()
            return 0
        self.metrics.frames_consumed.labels(self.m).inc(len(records))
        batch = triage(records, time.time())
        for stale in batch.stale:
            self.metrics.frames_dropped.labels(self.m, stale.reason).inc()
        for bad in batch.bad:
            self.dead_letter(bad.record, bad.reason, bad.detail)
        items = [ready.item for ready in batch.ready]
        jpegs = [ready.jpeg for ready in batch.ready]
        published = 0
        if items:
            self.metrics.batch_wait_seconds.labels(self.m).observe(time.monotonic() - first_at)
            self.metrics.batch_size.labels(self.m).observe(len(items))
            started = time.perf_counter()
            outputs = infer(self.model, [i.rgb for i in items])
            encoded_at = time.perf_counter()
            self.metrics.inference_seconds.labels(self.m).observe(encoded_at - started)
            events = to_events(items, outputs, self.names, self.m, self.options.min_score)
            payloads = [
                (e.stream_id, entry_id(e.captured_at, e.seq), encode_event(e)) for e in events
            ]
            self.metrics.mask_encode_seconds.labels(self.m).observe(
                time.perf_counter() - encoded_at
            )
            fresh_flags = self._publish(payloads, jpegs)
            if fresh_flags is None:
                # stopping: the batch is redelivered to whoever comes next
                self._all_published = False
                return 0
            done = time.time()
            for event, new in zip(events, fresh_flags, strict=True):
                if new:
                    published += 1
                    self.metrics.events_published.labels(self.m).inc()
                    self.metrics.capture_to_publish.labels(self.m).observe(done - event.captured_at)
                else:
                    self.metrics.duplicates.labels(self.m).inc()
        self._commit()
        self._lag()
        return published

    def _publish(
        self, payloads: list[tuple[str, str, bytes]], jpegs: list[bytes]
    ) -> list[bool] | None:
        """Publish, retrying until Redis answers (None when stopped meanwhile)."""
        delay = 0.2
        while not self.halt.is_set():
            started = time.perf_counter()
            try:
                flags = self.publisher.publish(payloads, jpegs if self.publisher.frames else None)
                self.metrics.publish_seconds.labels(self.m).observe(time.perf_counter() - started)
                return flags
            except redis.RedisError as exc:
                log.warning("publish failed, retrying in %.1f s: %s", delay, exc)
                self.halt.wait(delay)
                delay = min(delay * 2, 5.0)
        return None

    def _commit(self) -> None:
        """Commit what was polled (all of it is in Redis by now) without waiting for the
        broker: the next batch's inference overlaps the round trip. A commit that fails
        leaves records that come again to this or another worker; their events are in
        Redis already, so they are recognised and not published twice."""
        try:
            self.consumer.commit_async(callback=self._committed)
        except KafkaError as exc:
            log.warning("commit failed: %s", exc)

    @staticmethod
    def _committed(_offsets: object, response: object) -> None:
        if isinstance(response, Exception):
            log.warning("commit failed: %s", response)

    def _lag(self) -> None:
        lag = 0
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                lag += max(0, high - self.consumer.position(tp, timeout_ms=1000))
            except KafkaError:
                continue
        self.metrics.consumer_lag.labels(self.m).set(lag)
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                device = f"cuda:{index}"
                gpu = self.metrics.gpu_memory
                gpu.labels(device, "allocated").set(torch.cuda.memory_allocated(index))
                gpu.labels(device, "reserved").set(torch.cuda.memory_reserved(index))

    # loop ---------------------------------------------------------------------------------
    def run(
        self, stop: threading.Event | None = None, ready: Callable[[], None] | None = None
    ) -> None:
        """Cycle until ``stop`` is set (the worker's own ``halt`` by default)."""
        if stop is not None:
            self.halt = stop
        log.info("segment worker started", extra={"worker": self.worker_id, "model": self.m})
        if ready is not None:
            ready()
        try:
            while not self.halt.is_set():
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        self.halt.set()
        with contextlib.suppress(KafkaError):
            if self._all_published:  # the last asynchronous commit may not have gone out
                self.consumer.commit(timeout_ms=5000)
        with contextlib.suppress(KafkaError):
            self.consumer.close(autocommit=False)
        self.dlq.close(timeout=5)
        self.redis.close()
