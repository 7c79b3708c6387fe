"""The GPU worker's overlapped cycle (services/segment/gpu.py) on the CPU, around a stand-in
worker with scripted polls and CPU stand-ins for inference: batches are marked handled and
committed only after their events are delivered, in poll order; a batch not delivered (the
worker stopped) or a failing stage blocks every later batch; bad images go to the DLQ. The
real worker around it, with Kafka and Redis: tests/integration/test_pipeline.py (CPU cycle)
and tests/gpu/test_gpu_worker.py."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

import segcore
from segcore.data import synthetic
from services.common.events import MaskEvent
from services.common.frames import DeadLetter, FrameLimits, decode_frame, encode_frame
from services.common.metrics import PipelineMetrics
from services.common.settings import Settings
from services.segment.gpu import GpuCycle
from services.segment.infer import Item, class_names, infer, to_events
from services.segment.worker import SegmentOptions, SegmentWorker

WAIT_S = 10.0


@dataclass(frozen=True)
class Record:
    """The fields of a kafka-python ConsumerRecord the worker reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None


def record(offset: int, *, partition: int = 0, corrupt: bool = False) -> Record:
    rgb = np.full((24, 32, 3), offset * 10 % 256, np.uint8)
    message = encode_frame("cam", offset, offset / 5, time.time(), rgb)
    key, value, headers = message.to_record()
    if corrupt:  # the header intact (triage passes it), the scan cut short
        value = value[: value.index(b"\xff\xda") + 20]
    return Record("frames", partition, offset, key, value, headers)


class StandIn:
    """What the cycle uses of a SegmentWorker, with its real ``mark_handled``: polls come
    from a script, deliveries and commits go to ``log``."""

    mark_handled = SegmentWorker.mark_handled

    def __init__(self, batches: list[list[Record]], refuse: frozenset[int] = frozenset()) -> None:
        self.settings = Settings()
        self.options = SegmentOptions(device="cpu")
        self.model = torch.nn.Identity()
        self.names: list[str] = []
        self.m = "stand-in"
        self.metrics = PipelineMetrics()
        self.limits = FrameLimits()
        self.halt = threading.Event()
        self.batches = list(batches)
        self.refuse = refuse  # these deliveries (0, 1, ...) return None, as when stopped
        self.deliveries = 0
        self._handled: dict[TopicPartition, OffsetAndMetadata] = {}
        self.log: list[tuple[str, Any]] = []
        self.events: list[MaskEvent] = []
        self.lock = threading.Lock()

    def collect(self, idle_timeout_ms: int = 500) -> tuple[list[Any], float]:
        if not self.batches:
            self.halt.wait(min(idle_timeout_ms, 10) / 1000)  # a poll that finds nothing
            return [], 0.0
        return self.batches.pop(0), time.monotonic()

    def _lag(self) -> None:
        pass

    def _registered(self, records: list[Any]) -> set[str]:
        return {r.key.decode() for r in records}

    def dead_letter(self, record: Any, reason: DeadLetter, detail: str) -> None:
        with self.lock:
            self.log.append(("dlq", (record.offset, reason)))

    def deliver(self, ready: list[Any], events: list[MaskEvent]) -> int | None:
        assert [e.seq for e in events] == [r.item.seq for r in ready]
        with self.lock:
            index, self.deliveries = self.deliveries, self.deliveries + 1
            if index in self.refuse:
                return None
            self.log.append(("deliver", [e.seq for e in events]))
            self.events.extend(events)
        return len(events)

    def _commit(self) -> None:
        with self.lock:
            self.log.append(("commit", {tp.partition: o.offset for tp, o in self._handled.items()}))

    def committed(self) -> dict[int, int]:
        commits = [what for kind, what in self.log if kind == "commit"]
        return commits[-1] if commits else {}


def forward(frames: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    return [{"mean": f.float().mean()} for f in frames]


def finish(items: list[Item], outputs: list[dict[str, torch.Tensor]]) -> list[MaskEvent]:
    assert len(items) == len(outputs)
    return [
        MaskEvent(i.stream_id, i.seq, i.pts, i.captured_at, time.time(), "m", 32, 24, ())
        for i in items
    ]


def run_until(cycle: GpuCycle, worker: StandIn, done: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done() and time.monotonic() < deadline:
        cycle.step()
    assert done(), f"condition not reached within {WAIT_S} s; log: {worker.log}"


def make(worker: StandIn, **kwargs: Any) -> GpuCycle:
    kwargs.setdefault("forward", forward)
    kwargs.setdefault("finish", finish)
    return GpuCycle(worker, depth=2, **kwargs)  # type: ignore[arg-type]


def test_batches_are_committed_after_their_events_in_poll_order() -> None:
    batches = [[record(2 * b), record(2 * b + 1)] for b in range(6)]
    worker = StandIn(batches)
    cycle = make(worker)
    try:
        run_until(cycle, worker, lambda: worker.committed() == {0: 12})
    finally:
        cycle.close(WAIT_S)
    delivered: list[int] = []
    for kind, what in worker.log:
        if kind == "deliver":
            delivered.extend(what)
        elif kind == "commit":  # every committed offset's frame was delivered before
            assert what[0] <= len(delivered) and delivered == list(range(len(delivered)))
    assert delivered == list(range(12))


def test_a_batch_not_delivered_blocks_every_later_batch() -> None:
    batches = [[record(0), record(1)], [record(2)], [record(3)], [record(4)]]
    worker = StandIn(batches, refuse=frozenset({1}))  # the batches after it are delivered
    cycle = make(worker)
    try:
        run_until(cycle, worker, lambda: worker.deliveries == 4 and not cycle.overlap.in_flight)
        cycle.collect_done()
    finally:
        cycle.close(WAIT_S)
    assert worker.committed() == {0: 2}
    assert worker._handled[TopicPartition("frames", 0)].offset == 2


def test_a_failing_stage_is_raised_and_nothing_after_it_is_marked() -> None:
    calls = 0

    def failing(frames: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("CUDA error: an illegal memory access")
        return forward(frames)

    worker = StandIn([[record(i)] for i in range(5)])
    cycle = make(worker, forward=failing)
    deadline = time.monotonic() + WAIT_S
    try:
        with pytest.raises(RuntimeError, match="illegal memory access"):
            while time.monotonic() < deadline:
                cycle.step()
    finally:
        cycle.close(WAIT_S)
    assert worker._handled == {TopicPartition("frames", 0): OffsetAndMetadata(2)}
    assert [what for kind, what in worker.log if kind == "deliver"] == [[0], [1]]


def test_bad_images_go_to_the_dlq_and_their_offsets_with_the_batch() -> None:
    malformed = dataclasses.replace(record(3), headers=[("v", b"1")])
    batches = [[record(0), record(1, corrupt=True), record(2), malformed]]
    worker = StandIn(batches)
    cycle = make(worker)
    try:
        run_until(cycle, worker, lambda: worker.committed() == {0: 4})
    finally:
        cycle.close(WAIT_S)
    assert ("dlq", (3, DeadLetter.MALFORMED)) in worker.log  # at triage
    assert ("dlq", (1, DeadLetter.BAD_IMAGE)) in worker.log  # at the device decode
    assert ("deliver", [0, 2]) in worker.log


def test_records_of_a_batch_without_frames_wait_for_the_batches_before() -> None:
    gate = threading.Event()

    def slow(frames: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        gate.wait(WAIT_S)
        return forward(frames)

    malformed = dataclasses.replace(record(1), headers=[])
    worker = StandIn([[record(0)], [malformed]])
    cycle = make(worker, forward=slow)
    try:
        run_until(cycle, worker, lambda: not worker.batches)
        cycle.collect_done()
        assert worker.committed() == {}  # batch 1 is all bad, yet batch 0 holds its commit
        gate.set()
        run_until(cycle, worker, lambda: worker.committed() == {0: 2})
    finally:
        cycle.close(WAIT_S)


def test_the_serving_path_gives_the_events_of_the_plain_cycle() -> None:
    """The cycle's own forward and finish (``infer.infer``, ``infer.to_events`` on frames
    decoded by the batch decode) against the CPU worker's path on the same frames."""
    model = segcore.build("yolact_r18_demo", fuse=True)
    rgbs = [synthetic.frame(7, t, (96, 128))[0] for t in range(0, 12, 3)]
    messages = [
        encode_frame("cam", t, t / 5, time.time(), rgb, frame_size=(256, 192))
        for t, rgb in enumerate(rgbs)
    ]
    records = [Record("frames", 0, t, *m.to_record()) for t, m in enumerate(messages)]
    worker = StandIn([records[:2], records[2:]])
    worker.model, worker.names = model, class_names(model)
    worker.options = SegmentOptions(device="cpu", min_score=0.2)
    cycle = GpuCycle(worker, depth=2)  # type: ignore[arg-type]
    try:
        run_until(cycle, worker, lambda: worker.committed() == {0: 4})
    finally:
        cycle.close(WAIT_S)
    items = [
        Item("cam", m.seq, m.pts, m.captured_at, decode_frame(*m.to_record()).image(), m.frame_size)
        for m in messages
    ]
    plain = [
        event
        for batch in (items[:2], items[2:])
        for event in to_events(batch, infer(model, [i.rgb for i in batch]), worker.names, "m", 0.2)
    ]
    assert sum(len(e.instances) for e in plain) > 0, "the demo model found nothing to compare"
    assert [(e.seq, e.width, e.height) for e in worker.events] == [(e.seq, 256, 192) for e in plain]
    for got, want in zip(worker.events, plain, strict=True):
        assert [(i.class_id, i.mask_counts) for i in got.instances] == [
            (i.class_id, i.mask_counts) for i in want.instances
        ]
        for g, w in zip(got.instances, want.instances, strict=True):
            assert g.score == pytest.approx(w.score, abs=1e-5)
            assert g.box == pytest.approx(w.box, abs=1e-3)
