"""The ingest worker: owns streams through a consumer group on the registry topic and runs
one thread per stream that decodes the source with PyAV, samples it to the stream's fps,
shrinks frames to the model's input side, JPEG-encodes them and produces them to
``segstream.frames.<model>`` keyed by the stream id.

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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import av
import av.error
import numpy as np
from kafka import ConsumerRebalanceListener, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

import segcore
from services.common.events import DecodeError
from services.common.frames import encode_frame
from services.common.health import Backoff, Reason, State, StreamHealth
from services.common.kafka import (
    base_topics,
    ensure_topics,
    frames_spec,
    make_admin,
    make_consumer,
    make_producer,
    named,
    registry_topic,
)
from services.common.metrics import STATES, PipelineMetrics
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, decode_spec, redact
from services.ingest.source import (
    Sampler,
    SourceError,
    classify,
    frame_pts,
    open_source,
    start_offset,
    target_size,
)

log = logging.getLogger("segstream.ingest")

GROUP = "segstream-ingest"


@dataclass
class IngestOptions:
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0  # no packet for this long: the stream is stalled
    stall_s: float = 10.0  # packets but no decoded frame for this long: stalled too
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    jpeg_quality: int = 90
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 2_000


class StreamRunner(threading.Thread):
    """One stream's loop: connect, pump frames, back off and reconnect, until stopped or
    the stream ends (a file) or fails for good (error)."""

    def __init__(
        self,
        spec: StreamSpec,
        partition: int,
        producer: KafkaProducer,
        health: StreamHealth,
        metrics: PipelineMetrics,
        options: IngestOptions,
        topic: str,
        previous: StreamRunner | None = None,
    ) -> None:
        super().__init__(name=f"ingest-{spec.id}", daemon=True)
        self.spec = spec
        self.partition = partition
        self.producer = producer
        self.health = health
        self.metrics = metrics
        self.options = options
        self.previous = previous
        self.halt = threading.Event()
        self.topic = topic
        try:
            self.side = spec.max_side or segcore.input_side(spec.model)
        except KeyError:
            self.side = spec.max_side
        self.seq = 0
        self.last_captured = 0.0
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix=f"encode-{spec.id}")
        self.log = logging.LoggerAdapter(log, {"stream_id": spec.id})

    def stop(self) -> None:
        self.halt.set()

    def run(self) -> None:
        if self.previous is not None:
            self.previous.join()
            self.previous = None
        try:
            self._loop()
        except Exception as exc:  # a bug must not take the worker's other streams down
            self.log.exception("stream loop failed")
            self.health.set(State.ERROR, "internal", redact(str(exc)))
        finally:
            self._encoder.shutdown(wait=True)

    def _loop(self) -> None:
        self.metrics.start_stream(self.spec.id)
        self.seq = self.health.last_seq() + 1
        backoff = Backoff(self.options.backoff_base_s, self.options.backoff_cap_s)
        attempts = 0
        while not self.halt.is_set():
            if attempts:
                self.health.reconnects += 1
                self.metrics.reconnects.labels(self.spec.id).inc()
            attempts += 1
            self.health.set(State.CONNECTING)
            try:
                container = open_source(
                    self.spec.url,
                    open_timeout_s=self.options.open_timeout_s,
                    read_timeout_s=self.options.read_timeout_s,
                )
            except SourceError as exc:
                if not exc.retry:
                    self.health.set(State.ERROR, exc.reason, str(exc))
                    return
                self._back_off(backoff, exc.reason, str(exc))
                continue
            try:
                ended = self._pump(container, backoff)
            except SourceError as exc:
                ended = exc
            finally:
                container.close()
            if self.halt.is_set():
                return
            if ended is None and spec_loops(self.spec):
                attempts = 0  # a looping file starts again at once, as the same connection
                continue
            if ended is None:
                self.health.set(State.FINISHED)
                return
            if not ended.retry:
                self.health.set(State.ERROR, ended.reason, str(ended))
                return
            if ended.reason == Reason.NO_FRAMES:
                self.health.set(State.STALLED, ended.reason, str(ended))
            self._back_off(backoff, ended.reason, str(ended))

    def _back_off(self, backoff: Backoff, reason: str, message: str) -> None:
        delay = backoff.next()
        self.health.set(State.BACKOFF, reason, f"{message} (next attempt in {delay:.1f} s)")
        self.halt.wait(delay)

    def _pump(self, container: Any, backoff: Backoff) -> SourceError | None:
        """Decode until the source ends (None for a complete file) or fails (the error)."""
        spec = self.spec
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 30)
        offset = start_offset(stream)
        sampler = Sampler(spec.fps)
        budget_ms = int(spec.budget_s * 1000) if spec.budget_s else None
        sending: deque[Future[None]] = deque()
        try:
            return self._decode(
                container, stream, sampler, rate, offset, budget_ms, backoff, sending
            )
        finally:
            for future in sending:
                future.result()

    def _decode(
        self,
        container: Any,
        stream: Any,
        sampler: Sampler,
        rate: float,
        offset: float,
        budget_ms: int | None,
        backoff: Backoff,
        sending: deque[Future[None]],
    ) -> SourceError | None:
        spec, live = self.spec, self.spec.live
        decoded = 0
        last_frame = time.monotonic()
        paced_from: tuple[float, float] | None = None
        try:
            started = time.perf_counter()
            for packet in container.demux(stream):
                if self.halt.is_set():
                    return None
                for frame in packet.decode():
                    now = time.perf_counter()
                    self.metrics.decode_seconds.labels(spec.id).observe(now - started)
                    self.metrics.frames_decoded.labels(spec.id).inc()
                    pts = frame_pts(frame, decoded, rate, offset)
                    decoded += 1
                    if spec.realtime:
                        if paced_from is None:
                            paced_from = (pts, time.monotonic())
                        due = paced_from[1] + (pts - paced_from[0])
                        if self.halt.wait(max(0.0, due - time.monotonic())):
                            return None
                    last_frame = time.monotonic()
                    if sampler.keep(pts):
                        # Resize, encode and send on the encoder thread, overlapping the
                        # next frames' decoding; at most two frames wait, in order.
                        captured = max(time.time(), self.last_captured + 0.001)
                        self.last_captured = captured
                        while len(sending) >= 2:
                            sending.popleft().result()
                        sending.append(
                            self._encoder.submit(self._send, frame, pts, budget_ms, captured)
                        )
                        if self.health.state != State.RUNNING:
                            self.health.set(State.RUNNING)
                            backoff.reset()
                    started = time.perf_counter()
                if time.monotonic() - last_frame > self.options.stall_s:
                    return SourceError(
                        Reason.NO_FRAMES,
                        f"no frame decoded for {self.options.stall_s:.0f} s",
                        retry=live,
                    )
        except (av.error.FFmpegError, OSError, EOFError) as exc:
            return classify(exc, spec.url, live=live, opening=False)
        if live and not container.duration:
            return SourceError(Reason.DISCONNECTED, "the source ended the stream", retry=True)
        if live:  # a recording served over the network (an HLS VOD playlist): it ended
            return None if decoded else SourceError(Reason.NOT_VIDEO, "no frames", retry=False)
        expected = int(stream.frames or 0)
        if expected and decoded < expected - max(2, expected // 100):
            return SourceError(
                Reason.DECODE_ERROR,
                f"the file ended after {decoded} of its {expected} frames (truncated?)",
                retry=False,
            )
        if decoded == 0:
            return SourceError(Reason.DECODE_ERROR, "no frame could be decoded", retry=False)
        return None

    def _send(self, frame: Any, pts: float, budget_ms: int | None, captured: float) -> None:
        spec = self.spec
        started = time.perf_counter()
        width, height = frame.width, frame.height
        out_w, out_h = target_size(width, height, self.side)
        if (out_w, out_h) != (width, height):
            rgb = frame.to_ndarray(format="rgb24", width=out_w, height=out_h)
        else:
            rgb = frame.to_ndarray(format="rgb24")
        message = encode_frame(
            spec.id,
            self.seq,
            pts,
            captured,
            np.ascontiguousarray(rgb),
            self.options.jpeg_quality,
            frame_size=(width, height),
            budget_ms=budget_ms,
        )
        self.metrics.encode_seconds.labels(spec.id).observe(time.perf_counter() - started)
        self.metrics.frames_sampled.labels(spec.id).inc()
        key, value, headers = message.to_record()
        sent_at = time.perf_counter()
        try:
            future = self.producer.send(
                self.topic, key=key, value=value, headers=headers, partition=None
            )
        except KafkaError as exc:
            self.metrics.frames_dropped.labels(spec.model, "kafka-unavailable").inc()
            self.log.warning("frame %d not produced: %s", self.seq, exc)
            self.seq += 1
            return
        model = spec.model

        def acked(_metadata: object) -> None:
            self.metrics.produce_seconds.labels(model).observe(time.perf_counter() - sent_at)
            self.metrics.frames_produced.labels(model).inc()

        def failed(_error: object) -> None:
            self.metrics.frames_dropped.labels(model, "kafka-unavailable").inc()

        future.add_callback(acked)
        future.add_errback(failed)
        self.health.frame(self.seq, captured)
        self.seq += 1


def spec_loops(spec: StreamSpec) -> bool:
    return spec.loop and not spec.live


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
        admin = make_admin(settings)
        try:
            ensure_topics(admin, base_topics(settings))
        finally:
            admin.close()
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
        admin = make_admin(self.settings)
        try:
            ensure_topics(admin, [frames_spec(self.settings, model)])
        finally:
            admin.close()
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
            health.set(State.ERROR, "unknown-model", f"no model named {spec.model!r}")
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

    def assigned(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())
