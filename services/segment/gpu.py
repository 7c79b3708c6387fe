"""The segment worker's cycle on a CUDA device: host work overlapped with the device's.

Three threads, each on one batch at a time, batches in order (``services.segment.overlap``):

- the worker's own thread polls Kafka, triages the batch (headers, registry, latency budget;
  images only checked, ``gpu_frames.Declared``), sends bad records to the DLQ and submits the
  batch; it also commits, since the Kafka consumer is not to be shared between threads;
- the device stage, on a CUDA stream of its own: the batch's JPEGs decoded on the device
  (``gpu_frames.decode_frames``: nvJPEG, pinned buffers, CPU fallback), inference on the
  uint8 frames (``infer.infer``: ``preprocess_frames``, the network, compact masks; in
  float16 autocast when ``gpu_half``), then a CUDA event;
- the host stage, on a second stream: waits for that event, builds the events
  (``infer.to_events``: masks pasted with ``paste_masks(threshold=)`` and their run
  boundaries found by ``masks_to_rle`` on the device, the RLE strings on the host),
  sends frames the device could not decode to the DLQ (``bad-image``), publishes to Redis.

So while batch k's events are built and published, batch k+1 runs on the device and batch
k+2 is polled. The worker's guarantees hold as in its own cycle (services/segment/worker.py):
a batch's offsets are marked handled, and committed, only once its events are in Redis, and
in poll order: a batch not handled to the end (the worker stopped while Redis was away)
blocks the marking of every batch after it, and an error in a stage is raised in the
worker's thread after the batches before it are marked, the ones after it cancelled (they
come again to whoever polls next). At most ``gpu_pipeline_depth`` batches are in flight.

Tolerances, checked on CUDA by tests/gpu/test_gpu_worker.py against the float32 cycle: with
``gpu_half`` every instance scoring at least ``min_score`` + 0.05 in float32 has a twin of its
class with mask IoU >= 0.9, score within 0.03 and box within 2 px (the models' own float16
tolerance, tests/gpu/test_models_cuda.py); with ``gpu_channels_last`` mask IoU >= 0.99 and
scores within 1e-3. nvJPEG's pixels differ from Pillow's by at most 1.5 gray levels on
average; the cycle's events match the plain path's with mask IoU >= 0.98. Without CUDA the
same cycle runs on the CPU (no streams, no pinned buffers): tests of its ordering and commit
semantics run there with CPU stand-ins; the worker itself keeps its plain cycle on the CPU.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from services.common.events import DecodeError, MaskEvent
from services.common.frames import DeadLetter, FrameMessage
from services.segment.gpu_frames import Declared, Staging, decode_frames
from services.segment.infer import Item, infer, to_events
from services.segment.overlap import Overlap, PipelineFailed, Result
from services.segment.triage import Ready, triage

if TYPE_CHECKING:
    from services.segment.worker import SegmentWorker


@dataclass
class Batch:
    """One polled batch on its way: its records (all of them: their offsets are committed
    once it is handled), the frames to segment with their messages, and what the device
    stage leaves for the host stage."""

    records: list[Any]
    ready: list[Ready[Any]]
    messages: list[FrameMessage]
    first_at: float
    started: float = 0.0  # perf_counter when the device stage took it
    waited: float = 0.0  # seconds from its first record to the device stage
    decoded: list[int] = field(default_factory=list)  # indices into ready
    bad: list[tuple[int, DecodeError]] = field(default_factory=list)
    outputs: list[dict[str, Tensor]] = field(default_factory=list)
    done: torch.cuda.Event | None = None


def default_forward(
    model: nn.Module, half: bool
) -> Callable[[list[Tensor]], list[dict[str, Tensor]]]:
    """The device stage's inference: ``infer.infer`` (compact masks) on uint8 frames on the
    model's device, in float16 autocast when ``half`` (CUDA only; the outputs' floating
    tensors come back as float32, as the float32 model gives them)."""

    def forward(frames: list[Tensor]) -> list[dict[str, Tensor]]:
        if len({f.shape for f in frames}) > 1:  # not stacked: each its own (H, W, 3) batch
            frames = [f.contiguous() for f in frames]
        if not (half and frames[0].device.type == "cuda"):
            return infer(model, frames)
        with torch.autocast("cuda", dtype=torch.float16):
            outputs = infer(model, frames)
        return [
            {k: v.float() if v.is_floating_point() else v for k, v in o.items()} for o in outputs
        ]

    return forward


class GpuCycle:
    """The overlapped cycle of ``worker`` (see the module docstring): :meth:`step` replaces
    the worker's own step, :meth:`close` ends the stages before the worker closes.

    ``forward`` (frames -> outputs, on the device) and ``finish`` (items, outputs -> events)
    default to the serving path; tests pass CPU stand-ins."""

    def __init__(
        self,
        worker: SegmentWorker,
        *,
        forward: Callable[[list[Tensor]], list[dict[str, Tensor]]] | None = None,
        finish: Callable[[list[Item], list[dict[str, Tensor]]], list[MaskEvent]] | None = None,
        depth: int | None = None,
    ) -> None:
        settings = worker.settings
        self.worker = worker
        self.device = torch.device(worker.options.device)
        cuda = self.device.type == "cuda"
        if cuda and settings.gpu_channels_last:
            worker.model = worker.model.to(memory_format=torch.channels_last)
        self.forward = forward or default_forward(worker.model, settings.gpu_half)
        self.finish = finish or (
            lambda items, outputs: to_events(
                items, outputs, worker.names, worker.m, worker.options.min_score
            )
        )
        self.streams = (
            (torch.cuda.Stream(self.device), torch.cuda.Stream(self.device)) if cuda else None
        )
        self.staging = Staging(self.device)
        self.stalled = False  # a batch was not handled to the end: nothing after it is marked
        self.overlap: Overlap[list[Any]] = Overlap(
            [self._on_device, self._on_host],
            depth=depth if depth is not None else settings.gpu_pipeline_depth,
            name=f"segment-{worker.m}",
        )

    @contextlib.contextmanager
    def _stream(self, index: int) -> Iterator[None]:
        with torch.inference_mode():
            if self.streams is None:
                yield
            else:
                with torch.cuda.device(self.device), torch.cuda.stream(self.streams[index]):
                    yield

    # the worker's thread ----------------------------------------------------------------
    def step(self) -> int:
        """Mark the batches done since the last step, poll and submit one batch; the events
        published by the batches marked."""
        w = self.worker
        published = self.collect_done()
        records, first_at = w.collect(idle_timeout_ms=20 if self.overlap.in_flight else 500)
        if not records:
            w._lag()
            return published
        w.metrics.frames_consumed.labels(w.m).inc(len(records))
        declared = Declared()
        batch = triage(
            records,
            time.time(),
            registered=w._registered(records),
            limits=w.limits,
            decode=declared,
        )
        for drop in batch.dropped:
            w.metrics.frames_dropped.labels(w.m, drop.reason).inc()
        for bad in batch.bad:
            w.dead_letter(bad.record, bad.reason, bad.detail)
        item = Batch(records, batch.ready, declared.messages, first_at)
        try:
            while not self.overlap.submit(item, records, timeout=0.05):
                published += self.collect_done()
                if w.halt.is_set():
                    return published  # not submitted: redelivered to whoever comes next
        except PipelineFailed as failed:
            # mark the batches before the failed one, then raise its error from here
            while not w.halt.is_set():
                self.collect_done(timeout=0.1)
            raise failed.__cause__ or failed from None
        return published + self.collect_done()

    def collect_done(self, timeout: float = 0.0) -> int:
        """Mark the batches through both stages, in order, and commit; raises a stage's
        error (after marking the batches before it)."""
        published, marked = 0, False
        for result in self.overlap.results(timeout):
            published += self._account(result)
            marked = marked or (result.ok and not self.stalled)
        if marked:
            self.worker._commit()
            self.worker._lag()
        return published

    def _account(self, result: Result[list[Any]]) -> int:
        if result.error is not None:
            self.stalled = True
            raise result.error
        if self.stalled or result.cancelled or result.value is None:
            self.stalled = True
            return 0
        self.worker.mark_handled(result.tag)
        return int(result.value)

    def close(self, timeout: float = 30.0) -> None:
        """End the stages (a running stage finishes its batch; the rest are cancelled) and
        mark what completed before."""
        self.overlap.close(timeout)
        with contextlib.suppress(Exception):  # a stage's error was raised from step already
            self.collect_done()

    # the stages -------------------------------------------------------------------------
    def _on_device(self, batch: Batch) -> Batch:
        with self._stream(0):
            batch.started = time.perf_counter()
            batch.waited = time.monotonic() - batch.first_at
            frames: list[Tensor] = []
            for i, frame in enumerate(decode_frames(batch.messages, self.device, self.staging)):
                if isinstance(frame, DecodeError):
                    batch.bad.append((i, frame))
                else:
                    batch.decoded.append(i)
                    frames.append(frame)
            if frames:
                batch.outputs = self.forward(frames)
            if self.streams is not None:
                batch.done = torch.cuda.Event()
                batch.done.record()
        return batch

    def _on_host(self, batch: Batch) -> int | None:
        """The batch's new events (None: stopped before Redis took them)."""
        w = self.worker
        with self._stream(1):
            if batch.done is not None and self.streams is not None:
                batch.done.synchronize()
                self.streams[1].wait_event(batch.done)
            for i, error in batch.bad:
                w.dead_letter(batch.ready[i].record, DeadLetter.BAD_IMAGE, str(error))
            ready = [batch.ready[i] for i in batch.decoded]
            if not ready:
                return 0
            w.metrics.batch_wait_seconds.labels(w.m).observe(batch.waited)
            w.metrics.batch_size.labels(w.m).observe(len(ready))
            encoded_at = time.perf_counter()
            w.metrics.inference_seconds.labels(w.m).observe(encoded_at - batch.started)
            events = self.finish([r.item for r in ready], batch.outputs)
            if self.streams is not None:
                self.streams[1].synchronize()  # nothing queued still reads the outputs
            batch.outputs = []
        w.metrics.mask_encode_seconds.labels(w.m).observe(time.perf_counter() - encoded_at)
        return w.deliver(ready, events)
