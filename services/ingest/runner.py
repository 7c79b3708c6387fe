"""One stream's thread in the ingest worker: connect with PyAV, decode, sample to the
stream's fps (:func:`~services.ingest.source.sample_frames`), shrink frames to the model's
input side, JPEG-encode them and produce them to ``segstream.frames.<model>`` keyed by the
stream id; on failure back off and reconnect, writing every state change to the stream's
:class:`StreamHealth`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import av.error
from kafka import KafkaProducer
from kafka.errors import KafkaError

import segcore
from services.common.destinations import DestinationPolicy
from services.common.frames import Dropped, encode_frame
from services.common.health import Backoff, Reason, State, StreamHealth
from services.common.metrics import PipelineMetrics
from services.common.streams import StreamSpec, redact
from services.ingest.source import (
    Pacing,
    SampledFrame,
    SourceError,
    classify,
    open_source,
    sample_frames,
    timing,
)

log = logging.getLogger("segstream.ingest")


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
    # Where sources may point; the ingest worker sets its settings' policy. None: no policy
    # (a runner driven directly, as the benchmarks do).
    destinations: DestinationPolicy | None = None


def spec_loops(spec: StreamSpec) -> bool:
    return spec.loop and not spec.live


def spec_paced(spec: StreamSpec) -> bool:
    """Whether the stream's frames are paced to their pts: a ``realtime`` file, and a looping
    one (it acts as a camera; unpaced, it would decode as fast as it can, for ever)."""
    return spec.realtime or spec_loops(spec)


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
        self.seq = 0  # the next frame's
        self.resumed = False  # seq holds the stream's next seq (read or handed over)
        self.last_captured = 0.0
        self.pacing = Pacing()  # shared by a looping file's passes
        self.decoded = 0  # frames decoded on the current connection
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix=f"encode-{spec.id}")
        self.log = logging.LoggerAdapter(log, {"stream_id": spec.id})

    def stop(self) -> None:
        self.halt.set()

    def run(self) -> None:
        previous, self.previous = self.previous, None
        if previous is not None:
            previous.join()  # its last frame sent and its status written
        try:
            self._resume(previous)
            self._loop()
        except Exception as exc:  # a bug must not take the worker's other streams down
            self.log.exception("stream loop failed")
            self.health.set(State.ERROR, Reason.INTERNAL, redact(str(exc)))
        finally:
            self._encoder.shutdown(wait=True)
            self.health.release()  # the last seq written now; the client's sockets closed

    def _resume(self, previous: StreamRunner | None) -> None:
        """The stream's next seq and capture time: the replaced runner's, in memory (it has
        ended: nothing more comes from it, and its status hash may lag by a second), else
        one past the seq in the status hash (a previous owner's)."""
        if previous is not None and previous.resumed:
            self.health.resume(previous.seq - 1)
            self.seq = previous.seq
            self.last_captured = previous.last_captured
        else:
            self.seq = self.health.last_seq() + 1
        self.resumed = True

    def _loop(self) -> None:
        self.metrics.start_stream(self.spec.id)
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
                    destinations=self.options.destinations,
                )
            except SourceError as exc:
                self.log.debug("source not opened: %s", exc)
                if not exc.retry:
                    self.health.set(State.ERROR, exc.reason, exc.status_message)
                    return
                self._back_off(backoff, exc.reason, exc.status_message)
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
            self.log.debug("source failed: %s", ended)
            if not ended.retry:
                self.health.set(State.ERROR, ended.reason, ended.status_message)
                return
            if ended.reason == Reason.NO_FRAMES:
                self.health.set(State.STALLED, ended.reason, ended.status_message)
            self._back_off(backoff, ended.reason, ended.status_message)

    def _back_off(self, backoff: Backoff, reason: str, message: str) -> None:
        delay = backoff.next()
        self.health.set(State.BACKOFF, reason, f"{message} (next attempt in {delay:.1f} s)")
        self.halt.wait(delay)

    def _pump(self, container: Any, backoff: Backoff) -> SourceError | None:
        """Decode until the source ends (None for a complete file) or fails (the error)."""
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        sending: deque[Future[None]] = deque()
        try:
            return self._decode(container, stream, backoff, sending)
        finally:
            for future in sending:
                future.result()

    def _decoded(self, container: Any, stream: Any) -> Iterator[Any]:
        """The decoded frames of ``stream``, counted in ``decoded`` and measured; ends when
        the runner stops; SourceError(no-frames) when packets come but no frame for
        ``stall_s`` (time the consumer spends between frames is no stall)."""
        spec = self.spec
        last_frame = time.monotonic()
        started = time.perf_counter()
        for packet in container.demux(stream):
            if self.halt.is_set():
                return
            for frame in packet.decode():
                self.metrics.decode_seconds.labels(spec.id).observe(time.perf_counter() - started)
                self.metrics.frames_decoded.labels(spec.id).inc()
                self.decoded += 1
                yield frame
                last_frame = time.monotonic()
                started = time.perf_counter()
            if time.monotonic() - last_frame > self.options.stall_s:
                raise SourceError(
                    Reason.NO_FRAMES,
                    f"no frame decoded for {self.options.stall_s:.0f} s",
                    retry=spec.live,
                )

    def _decode(
        self, container: Any, stream: Any, backoff: Backoff, sending: deque[Future[None]]
    ) -> SourceError | None:
        spec, live = self.spec, self.spec.live
        budget_ms = int(spec.budget_s * 1000) if spec.budget_s else None
        rate, offset = timing(stream)
        self.decoded = 0
        self.pacing.restart(1.0 / rate)  # a loop's next pass: one frame period after the last
        try:
            for sampled in sample_frames(
                self._decoded(container, stream),
                rate=rate,
                offset=offset,
                fps=spec.fps,
                realtime=spec_paced(spec),
                side=self.side,
                captured_after=self.last_captured,
                wait=self.halt.wait,
                pacing=self.pacing,
            ):
                self.last_captured = sampled.captured_at
                # Resize, encode and send on the encoder thread, overlapping the next
                # frames' decoding; at most two frames wait, in order.
                while len(sending) >= 2:
                    sending.popleft().result()
                sending.append(self._encoder.submit(self._send, sampled, budget_ms))
                if self.health.state != State.RUNNING:
                    self.health.set(State.RUNNING)
                    backoff.reset()
        except SourceError as exc:
            return exc
        except (av.error.FFmpegError, OSError, EOFError) as exc:
            return classify(exc, spec.url, live=live, opening=False)
        if self.halt.is_set():
            return None
        decoded = self.decoded
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

    def _send(self, sampled: SampledFrame, budget_ms: int | None) -> None:
        """Resize, encode and produce one frame (on the encoder thread)."""
        spec = self.spec
        started = time.perf_counter()
        message = encode_frame(
            spec.id,
            self.seq,
            sampled.pts,
            sampled.captured_at,
            sampled.rgb(),
            self.options.jpeg_quality,
            frame_size=sampled.source_size,
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
            self.metrics.frames_dropped.labels(spec.model, Dropped.KAFKA_UNAVAILABLE).inc()
            self.log.warning("frame %d not produced: %s", self.seq, exc)
            self.seq += 1
            return
        model = spec.model

        def acked(_metadata: object) -> None:
            self.metrics.produce_seconds.labels(model).observe(time.perf_counter() - sent_at)
            self.metrics.frames_produced.labels(model).inc()

        def failed(_error: object) -> None:
            self.metrics.frames_dropped.labels(model, Dropped.KAFKA_UNAVAILABLE).inc()

        future.add_callback(acked)
        future.add_errback(failed)
        self.health.frame(self.seq, sampled.captured_at)
        self.seq += 1
