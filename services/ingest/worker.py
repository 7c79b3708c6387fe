"""The ingest worker: owns streams through a consumer group on the registry topic and runs
one :class:`~services.ingest.runner.StreamRunner` thread per stream (decode with PyAV, sample
to the stream's fps, shrink to the model's input side, JPEG-encode, produce to
``segstream.frames.<model>`` keyed by the stream id).

Ownership: the workers share the group ``segstream-ingest`` on ``segstream.streams``; each
worker reads its partitions from the beginning (the topic is compacted: the latest record
per stream) and runs the streams on them. When a worker dies, the group's session timeout
moves its partitions, and so its streams, to the others. Offsets are never committed: a
worker given a partition always rebuilds that partition's streams from its records.
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
from typing import Any

from kafka import ConsumerRebalanceListener
from kafka.errors import KafkaError

import segcore
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
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, decode_spec
from services.ingest.runner import IngestOptions, StreamRunner

log = logging.getLogger("segstream.ingest")

GROUP = "segstream-ingest"


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
        self.options = options or IngestOptions()
        self.worker_id = worker_id or f"ingest-{socket.gethostname()}-{os.getpid()}"
        self.runners: dict[str, StreamRunner] = {}
        self.specs: dict[str, StreamSpec] = {}
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
        """Partitions moved away: stop their streams (the new owner starts them)."""
        for stream_id in [s for s, r in self.runners.items() if r.partition in partitions]:
            self.runners.pop(stream_id).stop()
            self.specs.pop(stream_id, None)
            log.info("stream released", extra={"stream_id": stream_id})

    def _ensure_topic(self, model: str) -> None:
        if model in self._topics:
            return
        bootstrap_topics(self.settings, [frames_spec(self.settings, model)])
        self._topics.add(model)

    def apply(self, key: bytes | None, value: bytes | None, partition: int) -> None:
        """One registry record: add, replace or (tombstone) remove a stream."""
        stream_id = key.decode(errors="replace") if key else ""
        if value is None:
            runner = self.runners.pop(stream_id, None)
            self.specs.pop(stream_id, None)
            if runner is not None:
                runner.stop()
                runner.health.forget()
            elif stream_id:
                StreamHealth(self.redis, stream_id, self.worker_id).forget()
            log.info("stream removed", extra={"stream_id": stream_id})
            return
        try:
            spec = decode_spec(key, value)
        except DecodeError as exc:
            log.error("bad registry record: %s", exc, extra={"stream_id": stream_id})
            return
        if self.specs.get(spec.id) == spec and spec.id in self.runners:
            return
        previous = self.runners.pop(spec.id, None)
        if previous is not None:
            previous.stop()
        health = StreamHealth(self.redis, spec.id, self.worker_id)
        self.specs[spec.id] = spec
        if spec.model not in segcore.list_models():
            health.set(State.ERROR, Reason.UNKNOWN_MODEL, f"no model named {spec.model!r}")
            return
        try:
            self._ensure_topic(spec.model)
        except KafkaError as exc:
            log.error("no frames topic: %s", exc, extra={"stream_id": spec.id})
        runner = StreamRunner(
            spec,
            partition,
            self.producer,
            health,
            self.metrics,
            self.options,
            frames_spec(self.settings, spec.model).name,
            previous,
        )
        self.runners[spec.id] = runner
        log.info("stream %s", "updated" if previous else "added", extra={"stream_id": spec.id})
        runner.start()

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
        counts = dict.fromkeys(STATES, 0)
        for runner in self.runners.values():
            runner.health.flush()
            counts[runner.health.state.value] += 1
        for state, count in counts.items():
            self.metrics.streams.labels(state).set(count)

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
        runners = list(self.runners.values())
        for runner in runners:
            runner.stop()
        for runner in runners:
            runner.join(timeout=self.options.read_timeout_s + 2)
        self.runners.clear()
        with contextlib.suppress(KafkaError):
            self.consumer.close()
        self.producer.close(timeout=5)
        self.redis.close()
