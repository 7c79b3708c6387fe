"""The ingest worker: owns streams through a consumer group on the registry topic and runs
one :class:`~services.ingest.runner.StreamRunner` thread per stream (decode with PyAV, sample
to the stream's fps, shrink to the model's input side, JPEG-encode, produce to
``segstream.frames.<model>`` keyed by the stream id).

Ownership: the workers share the group ``segstream-ingest`` on ``segstream.streams``; each
worker reads its partitions from the beginning (the topic is compacted: the latest record
per stream) and runs the streams on them. When a worker dies, the group's session timeout
moves its partitions, and so its streams, to the others. Offsets are never committed: a
worker given a partition always rebuilds that partition's streams from its records.

Limits: at most ``ingest_max_streams`` streams run at once; the others wait on this worker
(the owner of their partition), ``pending`` with reason ``worker-full``, first come first
served. Each runner has its own Redis client, closed as it ends; a removed stream's events
(with its tracking document and analytics events) expire after
``deleted_stream_retention_s``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from kafka import ConsumerRebalanceListener
from kafka.errors import KafkaError

import segcore
from services.common.destinations import DestinationPolicy
from services.common.events import DecodeError
from services.common.health import Reason, State, StreamHealth
from services.common.kafka import (
    base_topics,
    bootstrap_topics,
    frames_spec,
    make_consumer,
    make_producer,
    named,
    registry_topic,
)
from services.common.metrics import STATES, PipelineMetrics
from services.common.redis import (
    analytics_key,
    frames_key,
    latest_key,
    make_redis,
    masks_key,
    tracks_key,
)
from services.common.settings import Settings
from services.common.streams import StreamSpec, decode_spec
from services.ingest.runner import IngestOptions, StreamRunner

log = logging.getLogger("segstream.ingest")

GROUP = "segstream-ingest"
CLIENT_PREFIX = "segstream-ingest:"  # + stream id: the Redis client name of a stream's runner


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.release({tp.partition for tp in revoked})

    def on_partitions_assigned(self, assigned: Any) -> None:
        partitions = sorted(tp.partition for tp in assigned)
        log.info("registry partitions assigned", extra={"partitions": str(partitions)})
        if assigned:
            self.worker.consumer.seek_to_beginning(*assigned)


class IngestWorker:
    """Owns streams (see the module docstring) and runs a :class:`StreamRunner` for each."""

    def __init__(
        self,
        settings: Settings,
        metrics: PipelineMetrics | None = None,
        options: IngestOptions | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or PipelineMetrics()
        self.options = dataclasses.replace(
            options or IngestOptions(), destinations=DestinationPolicy.from_settings(settings)
        )
        self.worker_id = worker_id or f"ingest-{socket.gethostname()}-{os.getpid()}"
        self.runners: dict[str, StreamRunner] = {}
        self.specs: dict[str, StreamSpec] = {}
        self.waiting: dict[str, int] = {}  # stream id -> partition, first come first
        self.retired: dict[str, StreamRunner] = {}  # stopped runners, for the seq handover
        # owned streams that cannot run (no such model): their error status, rewritten by
        # the loop as a runner's is, with the partition that owns them
        self.unrunnable: dict[str, tuple[StreamHealth, int]] = {}
        self.redis = make_redis(settings, socket_timeout=5, health_check_interval=10)
        # batch_size: a file read faster than real time sends several frames per request
        # (one 25 KB frame alone is larger than kafka-python's 16 KB default).
        self.producer = make_producer(
            settings,
            max_block_ms=5000,
            linger_ms=2,
            retries=5,
            compression_type=None,
            batch_size=1024 * 1024,
        )
        self._topics: set[str] = set()
        bootstrap_topics(settings, base_topics(settings))
        self.consumer = make_consumer(
            settings,
            group_id=named(settings, GROUP),
            client_id=self.worker_id,
            session_timeout_ms=self.options.session_timeout_ms,
            heartbeat_interval_ms=self.options.heartbeat_interval_ms,
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=8 * 1024 * 1024,
        )
        self.consumer.subscribe([registry_topic(settings)], listener=_Rebalance(self))

    # ownership -------------------------------------------------------------------------
    def release(self, partitions: set[int]) -> None:
        """Partitions moved away: stop their streams and wait for them to end, so their last
        seq is in the status hash before the new owner reads it (the new owner starts them);
        their waiting streams wait on the new owner instead."""
        released = [s for s, r in self.runners.items() if r.partition in partitions]
        runners = [self.runners.pop(stream_id) for stream_id in released]
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join(timeout=self.options.read_timeout_s + 2)
        for stream_id in [s for s, p in self.waiting.items() if p in partitions]:
            del self.waiting[stream_id]
            released.append(stream_id)
        for stream_id in [s for s, r in self.retired.items() if r.partition in partitions]:
            del self.retired[stream_id]
        for stream_id in [s for s, (_, p) in self.unrunnable.items() if p in partitions]:
            del self.unrunnable[stream_id]
            released.append(stream_id)
        for stream_id in released:
            self.specs.pop(stream_id, None)
            log.info("stream released", extra={"stream_id": stream_id})

    def _ensure_topic(self, model: str) -> None:
        if model in self._topics:
            return
        bootstrap_topics(self.settings, [frames_spec(self.settings, model)])
        self._topics.add(model)

    def active(self) -> int:
        """Streams whose runner runs (connecting, running, stalled, backoff): what
        ``ingest_max_streams`` limits; a finished or failed stream's thread has ended."""
        return sum(1 for runner in self.runners.values() if runner.is_alive())

    def _status(self, stream_id: str) -> StreamHealth:
        """A status writer of a stream without a runner, on the worker's client; it keeps the
        seq the hash holds (read first), so the stream goes on from it once it runs."""
        health = StreamHealth(self.redis, stream_id, self.worker_id)
        health.last_seq()
        return health

    def _retire(self, stream_id: str) -> StreamRunner | None:
        """Stop the stream's runner and keep it for the seq handover to its next runner."""
        runner = self.runners.pop(stream_id, None)
        if runner is not None:
            runner.stop()
            self.retired[stream_id] = runner
        return runner

    def apply(self, key: bytes | None, value: bytes | None, partition: int) -> None:
        """One registry record: add, replace or (tombstone) remove a stream. A new stream
        waits (``pending``, ``worker-full``) while the worker runs ``ingest_max_streams``
        streams or others wait before it; a running stream that is updated keeps its place."""
        stream_id = key.decode(errors="replace") if key else ""
        if value is None:
            self._remove(stream_id)
            return
        try:
            spec = decode_spec(key, value)
        except DecodeError as exc:
            log.error("bad registry record: %s", exc, extra={"stream_id": stream_id})
            return
        known = spec.id in self.runners or spec.id in self.waiting
        if self.specs.get(spec.id) == spec and known:
            return
        self.specs[spec.id] = spec
        self._keep(spec.id)
        if spec.id in self.waiting:  # an update of a waiting stream: it keeps its turn
            self.waiting[spec.id] = partition
            return
        previous = self._retire(spec.id)
        if previous is not None and previous.is_alive():
            self._start(spec, partition)  # the replacement takes the running one's place
        elif not self.waiting and self.active() < self.settings.ingest_max_streams:
            self._start(spec, partition)
        else:
            self._wait(spec.id, partition)

    def _wait(self, stream_id: str, partition: int) -> None:
        self.unrunnable.pop(stream_id, None)
        self.waiting[stream_id] = partition
        limit = self.settings.ingest_max_streams
        self._status(stream_id).set(
            State.PENDING,
            Reason.WORKER_FULL,
            f"its ingest worker runs {limit} streams, its limit; it starts when one of them "
            "ends or is removed",
        )
        log.info("stream waits for room", extra={"stream_id": stream_id})

    def _admit(self) -> None:
        """Start waiting streams, first come first served, while the worker has room."""
        while self.waiting and self.active() < self.settings.ingest_max_streams:
            stream_id = next(iter(self.waiting))
            partition = self.waiting.pop(stream_id)
            self._start(self.specs[stream_id], partition)

    def _start(self, spec: StreamSpec, partition: int) -> None:
        """Run the stream: a runner with a Redis client of its own (closed when it ends), going
        on from the seq of the stream's previous runner on this worker, if any."""
        previous = self.retired.pop(spec.id, None)
        self.unrunnable.pop(spec.id, None)
        if spec.model not in segcore.list_models():
            if previous is not None:
                previous.join(timeout=self.options.read_timeout_s + 2)  # its status written
                self.retired[spec.id] = previous
            health = self._status(spec.id)
            health.set(State.ERROR, Reason.UNKNOWN_MODEL, f"no model named {spec.model!r}")
            self.unrunnable[spec.id] = (health, partition)
            return
        try:
            self._ensure_topic(spec.model)
        except KafkaError as exc:
            log.error("no frames topic: %s", exc, extra={"stream_id": spec.id})
        client = make_redis(
            self.settings,
            socket_timeout=5,
            health_check_interval=10,
            client_name=f"{CLIENT_PREFIX}{spec.id}",
        )
        runner = StreamRunner(
            spec,
            partition,
            self.producer,
            StreamHealth(client, spec.id, self.worker_id),
            self.metrics,
            self.options,
            frames_spec(self.settings, spec.model).name,
            previous,
        )
        self.runners[spec.id] = runner
        log.info("stream %s", "updated" if previous else "added", extra={"stream_id": spec.id})
        runner.start()

    def _remove(self, stream_id: str) -> None:
        """A tombstone: stop the stream (its runner closes its Redis client as it ends),
        delete its status and let its events expire after ``deleted_stream_retention_s``."""
        runner = self.runners.pop(stream_id, None)
        retired = self.retired.pop(stream_id, None)
        self.specs.pop(stream_id, None)
        self.waiting.pop(stream_id, None)
        unrunnable = self.unrunnable.pop(stream_id, None)
        if unrunnable is not None:
            unrunnable[0].forget()
        for stopped in (runner, retired):
            if stopped is not None:
                stopped.stop()
                stopped.health.forget()
        if not stream_id:
            return
        if runner is None:
            StreamHealth(self.redis, stream_id, self.worker_id).forget()
        retention = self.settings.deleted_stream_retention_s
        try:
            pipe = self.redis.pipeline(transaction=False)
            for data in (
                masks_key(stream_id),
                frames_key(stream_id),
                latest_key(stream_id),
                tracks_key(stream_id),
                analytics_key(stream_id),
            ):
                if retention:
                    pipe.expire(data, retention, lt=True)  # never later than it would
                else:
                    pipe.delete(data)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("events not set to expire: %s", exc, extra={"stream_id": stream_id})
        log.info("stream removed", extra={"stream_id": stream_id})

    def _keep(self, stream_id: str) -> None:
        """A registered stream's events, analytics events and tracking document never expire
        (it may be one removed and added again within the retention: its track ids go on)."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for data in (masks_key(stream_id), tracks_key(stream_id), analytics_key(stream_id)):
                pipe.persist(data)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("events not kept: %s", exc, extra={"stream_id": stream_id})

    # main loop -------------------------------------------------------------------------
    def poll_once(self, timeout_ms: int = 500) -> None:
        try:
            batches = self.consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            log.warning("registry poll failed: %s", exc)
            time.sleep(1)
            return
        for tp, records in batches.items():
            for record in records:
                self.apply(record.key, record.value, tp.partition)
        self._admit()
        counts = dict.fromkeys(STATES, 0)
        counts[State.PENDING.value] = len(self.waiting)
        staleness: dict[str, float | None] = {}
        healths = [(s, r.health) for s, r in self.runners.items()]
        healths += [(s, health) for s, (health, _) in self.unrunnable.items()]
        for stream_id, health in healths:
            # writes what changed, and a terminal status again now and then (a Redis that
            # lost it shows it again); reads the newest event's time for the staleness
            try:
                staleness[stream_id] = health.refresh()
            except Exception:  # one stream's status must not take the worker down
                log.exception("status refresh failed", extra={"stream_id": stream_id})
                staleness[stream_id] = None
            counts[health.state.value] += 1
        for state, count in counts.items():
            self.metrics.streams.labels(state).set(count)
        self.metrics.set_staleness(staleness)

    def run(self, stop: threading.Event, ready: Callable[[], None] | None = None) -> None:
        gc.collect()
        gc.freeze()  # the imported libraries' objects: out of the collector's full passes
        log.info("ingest worker started", extra={"worker": self.worker_id})
        if ready is not None:
            ready()
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            self.close()

    def close(self) -> None:
        runners = [*self.runners.values(), *self.retired.values()]
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join(timeout=self.options.read_timeout_s + 2)
        self.runners.clear()
        self.retired.clear()
        self.waiting.clear()
        self.unrunnable.clear()
        with contextlib.suppress(KafkaError):
            self.consumer.close()
        self.producer.close(timeout=5)
        self.redis.close()
