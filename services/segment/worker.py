"""The segment worker of one model: consumer group ``segment-<model>`` on
``segstream.frames.<model>``.

Each cycle takes a batch across streams (up to ``batch_size`` frames, or whatever arrived
within ``batch_deadline_ms`` of the first: no stream, dead or alive, holds a batch back) and
sorts it with :func:`~services.segment.triage.triage` (pure): frames of streams the registry
does not hold and frames older than their stream's latency budget are dropped (counted by
reason), records that cannot be parsed or are past the frame limits go to ``segstream.dlq``
with the reason, the rest are segmented. It publishes one event per frame to Redis (stream
entry with an id derived from capture time and seq, pub/sub channel, latest key; a
redelivered frame's entry exists already and is not published again; a frame whose event
Redis refuses goes to the DLQ) and only then commits the batch's offsets: at-least-once
delivery, exactly-once events. Only offsets of batches handled to the end are ever committed,
however the worker stops. Redis or Kafka going away stalls the cycle until they answer; the
worker itself never needs a restart.
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
from functools import partial
from typing import Any

import redis
import torch
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from torch import nn

from segcore.tracking.analytics import Line, Zone
from services.api.table import StreamTable
from services.common.events import MaskEvent, encode_event
from services.common.frames import DeadLetter, FrameLimits
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
from services.common.redis import EventPublisher, entry_id, make_redis, tracking_documents
from services.common.settings import Settings
from services.segment.gpu import GpuCycle
from services.segment.infer import class_names, infer, load_model, to_events
from services.segment.lag import BrokerEndOffsets, EndOffsets, consumer_lag
from services.segment.tracks import StreamTracks
from services.segment.triage import Ready, triage

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
    registry_sync_s: float = 10.0  # how long an unknown stream id waits for the registry view


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
        # The served build, warmed up (graphs compiled) here: before the consumer below
        # joins the group, so no frame waits for a compilation.
        self.model = model or load_model(model_name, self.options.device)
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
        self.limits = FrameLimits(settings.frame_max_pixels, settings.frame_max_bytes)
        self.registry = StreamTable(settings)  # the registry's streams, kept current
        # Identities and analytics, their state kept in Redis with the events.
        self.tracks = StreamTracks(
            partial(tracking_documents, self.redis), self._geometry, media_time=self._media_time
        )
        self._assigned: set[TopicPartition] = set()
        self._reassigned = False
        self._end_client = BrokerEndOffsets(settings, f"{self.worker_id}-lag")
        self.ends = EndOffsets(self._end_client).start()  # for the lag, off the loop
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
        # next offset of each partition after the batches handled to the end: all that
        # is ever committed
        self._handled: dict[TopicPartition, OffsetAndMetadata] = {}
        self.m = self.model_name
        self.metrics.start_model(self.m)
        cuda = torch.device(self.options.device).type == "cuda"  # on CUDA, host work overlaps
        self._gpu: GpuCycle | None = GpuCycle(self) if cuda else None  # services/segment/gpu.py

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
            self._note_assignment()
            if not batch:
                break
            if not first_at:
                first_at = time.monotonic()
            elif not polled and self._caught_up():
                break
        return batch, first_at

    def _note_assignment(self) -> None:
        """After a poll (on this thread, the consumer's): flag a changed assignment, so the
        stage that tracks (this thread, or the CUDA cycle's host stage) drops its states."""
        assigned = set(self.consumer.assignment())
        if assigned != self._assigned:
            self._assigned = assigned
            self._reassigned = True

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

    def _registered(self, records: list[Any]) -> set[str]:
        """The batch's stream ids that the registry holds. An id the view does not know may
        be a stream registered just before its first frames, so the view first catches up
        with the registry topic as it is now (after the poll): only then is the id
        unregistered. A view that cannot catch up (Kafka away) keeps such ids, with a
        warning, rather than dropping frames it cannot judge."""
        ids = {r.key.decode(errors="replace") for r in records if r.key}
        unknown = {i for i in ids if self.registry.get(i) is None}
        if not unknown:
            return ids
        if not self.registry.sync(self.options.registry_sync_s):
            log.warning(
                "registry view behind: frames of unknown streams kept",
                extra={"streams": sorted(unknown)[:10]},
            )
            return ids
        unknown = {i for i in unknown if self.registry.get(i) is None}
        if unknown:
            log.info(
                "frames of unregistered streams dropped", extra={"streams": sorted(unknown)[:10]}
            )
        return ids - unknown

    def _geometry(self, stream_id: str) -> tuple[list[Zone], list[Line]] | None:
        """A stream's zones and lines, as the registry view has them (None: not held)."""
        spec = self.registry.get(stream_id)
        return (spec.zone_objects(), spec.line_objects()) if spec is not None else None

    def _media_time(self, stream_id: str) -> bool:
        """Whether a stream is tracked on its frames' pts: a file not played in real time
        (its frames' capture times are when they were decoded, in bursts and waits)."""
        spec = self.registry.get(stream_id)
        return spec is not None and not spec.live and not spec.realtime

    def step(self) -> int:
        """One batch: returns the number of events published (on CUDA: of the batches done)."""
        if self._gpu is not None:
            return self._gpu.step()
        records, first_at = self.collect()
        if not records:
            self._lag()
            return 0
        self.metrics.frames_consumed.labels(self.m).inc(len(records))
        batch = triage(
            records, time.time(), registered=self._registered(records), limits=self.limits
        )
        for drop in batch.dropped:
            self.metrics.frames_dropped.labels(self.m, drop.reason).inc()
        for bad in batch.bad:
            self.dead_letter(bad.record, bad.reason, bad.detail)
        published = self._segment(batch.ready, first_at) if batch.ready else 0
        if published is None:
            return 0  # stopping: the batch is redelivered to whoever comes next
        self.mark_handled(records)
        self._commit()
        self._lag()
        return published

    def mark_handled(self, records: list[Any]) -> None:
        """Mark a batch handled to the end (its events are in Redis): the next commit
        includes its offsets."""
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if record.offset >= self._handled.get(tp, OffsetAndMetadata(0)).offset:
                self._handled[tp] = OffsetAndMetadata(record.offset + 1)

    def _segment(self, ready: list[Ready[Any]], first_at: float) -> int | None:
        """Segment and publish the ready frames; the number of new events (None: stopped
        before Redis took them). A frame whose event Redis refuses goes to the DLQ."""
        items = [r.item for r in ready]
        self.metrics.batch_wait_seconds.labels(self.m).observe(time.monotonic() - first_at)
        self.metrics.batch_size.labels(self.m).observe(len(items))
        started = time.perf_counter()
        outputs = infer(self.model, [i.rgb for i in items])
        encoded_at = time.perf_counter()
        self.metrics.inference_seconds.labels(self.m).observe(encoded_at - started)
        events = to_events(items, outputs, self.names, self.m, self.options.min_score)
        self.metrics.mask_encode_seconds.labels(self.m).observe(time.perf_counter() - encoded_at)
        return self.deliver(ready, events)

    def deliver(self, ready: list[Ready[Any]], events: list[MaskEvent]) -> int | None:
        """Track the frames' events (services/segment/tracks.py) and publish them with their
        streams' tracking documents and analytics events; the number of new ones (None:
        stopped before Redis took them). Refused ones: the DLQ."""
        if self._reassigned:  # a rebalance: others may have published meanwhile
            self._reassigned = False
            self.tracks.clear()
        tracked = self.tracks.track(events)
        events = [frame.event for frame in tracked]
        payloads = [(e.stream_id, entry_id(e.captured_at, e.seq), encode_event(e)) for e in events]
        outcomes = self._publish(
            payloads, [r.jpeg for r in ready], [(f.document, f.analytics) for f in tracked]
        )
        if outcomes is None:
            self.tracks.forget(e.stream_id for e in events)
            return None
        # A stream whose event was not new was published by someone else: reread its state.
        self.tracks.forget(
            e.stream_id for e, o in zip(events, outcomes, strict=True) if o is not True
        )
        done = time.time()
        published = 0
        for frame, event, payload, outcome, track in zip(
            ready, events, payloads, outcomes, tracked, strict=True
        ):
            if isinstance(outcome, redis.ResponseError):
                detail = f"Redis refused event {event.stream_id}/{payload[1]}: {outcome}"
                self.dead_letter(frame.record, DeadLetter.REJECTED, detail)
            elif outcome:
                published += 1
                self.metrics.events_published.labels(self.m).inc()
                if track.counts is not None:
                    self.metrics.record_analytics(
                        event.stream_id, track.analytics_bodies, track.counts
                    )
                self.metrics.capture_to_publish.labels(self.m).observe(done - event.captured_at)
            else:
                self.metrics.duplicates.labels(self.m).inc()
        return published

    def _publish(
        self,
        payloads: list[tuple[str, str, bytes]],
        jpegs: list[bytes],
        tracks: list[tuple[bytes | None, tuple[bytes, ...]]],
    ) -> list[bool | redis.ResponseError] | None:
        """Publish, waiting until Redis takes the batch (None when stopped meanwhile): an
        unreachable Redis and a refusal that reflects its state (out of memory, read-only,
        ...) are retried with backoff; events Redis refuses on their own account come back
        as their error replies."""
        delay = 0.2
        while not self.halt.is_set():
            started = time.perf_counter()
            try:
                outcomes = self.publisher.publish(
                    payloads, jpegs if self.publisher.frames else None, tracks
                )
                self.metrics.publish_seconds.labels(self.m).observe(time.perf_counter() - started)
                return outcomes
            except redis.RedisError as exc:
                why = (
                    "Redis unreachable"
                    if isinstance(exc, redis.ConnectionError | redis.TimeoutError)
                    else "Redis refuses writes"
                    if isinstance(exc, redis.ResponseError)
                    else "Redis error"
                )
                log.warning("publish failed (%s), retrying in %.1f s: %s", why, delay, exc)
            self.halt.wait(delay)
            delay = min(delay * 2, 5.0)
        return None

    def _owned_handled(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """The handled offsets of the partitions this worker still owns (others are
        forgotten: their new owner commits them)."""
        assigned = self.consumer.assignment()
        self._handled = {tp: o for tp, o in self._handled.items() if tp in assigned}
        return dict(self._handled)

    def _commit(self) -> None:
        """Commit the handled batches (their events are in Redis by now) without waiting
        for the broker: the next batch's inference overlaps the round trip. A commit that
        fails leaves records that come again to this or another worker; their events are in
        Redis already, so they are recognised and not published twice."""
        try:
            self.consumer.commit_async(offsets=self._owned_handled(), callback=self._committed)
        except KafkaError as exc:
            log.warning("commit failed: %s", exc)

    @staticmethod
    def _committed(_offsets: object, response: object) -> None:
        if isinstance(response, Exception):
            log.warning("commit failed: %s", response)

    def forget_removed(self) -> None:
        """Streams removed from the registry lose their zone and line series and the
        tracking state kept for them (a stream added again reads its document)."""
        known = self.metrics.analytics_streams() | self.tracks.streams()
        removed = sorted(s for s in known if self.registry.get(s) is None)
        for stream in removed:
            self.metrics.forget_analytics(stream)
        if removed:
            self.tracks.forget(removed)

    def _lag(self) -> None:
        """The lag (services/segment/lag.py: end offsets read off the loop minus positions),
        and the series of streams removed meanwhile."""
        self.forget_removed()
        positions: dict[TopicPartition, int] = {}
        for tp in self.consumer.assignment():
            with contextlib.suppress(KafkaError):
                position = self.consumer.position(tp, timeout_ms=1000)
                if position is not None:  # None: not known within the timeout
                    positions[tp] = position
        self.ends.want(positions)
        self.metrics.consumer_lag.labels(self.m).set(consumer_lag(self.ends.latest(), positions))
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
        """Stop: commit the batches handled to the end (the last asynchronous commit may not
        have gone out), never one polled and not handled, whichever way the loop ended."""
        self.halt.set()
        if self._gpu is not None:
            self._gpu.close()
        with contextlib.suppress(KafkaError):
            offsets = self._owned_handled()
            if offsets:
                self.consumer.commit(offsets=offsets, timeout_ms=5000)
        with contextlib.suppress(KafkaError):
            self.consumer.close(autocommit=False)
        self.registry.close()
        self.ends.close()
        self._end_client.close()
        self.dlq.close(timeout=5)
        self.redis.close()
