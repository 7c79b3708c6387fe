"""The GPU segment worker's cycle against bare inference, measured in the same run.

    .venv/bin/python bench/gpu_pipeline.py [--model yolact_r18_demo] [--batches 25]
        [--batch-size 8] [--repeat 3] [--device cuda]

Does the overlapped cycle (services/segment/gpu.py) keep the device busy? Three ways of
turning the same JPEG frame messages into encoded events, in this process, each timed over
``--batches`` batches after a warm-up batch, median of ``--repeat`` runs:

- bare (the baseline): ``infer.infer`` on the frames already decoded and on the device,
  synchronised at the end: inference alone, nothing the worker does around it;
- serial: the CPU worker's own cycle on the device, one step after another per batch
  (Pillow decode, ``infer.infer``, ``infer.to_events``, ``encode_event``);
- overlapped: ``GpuCycle`` (nvJPEG batch decode, pinned buffers, the device stage of batch
  k+1 beside the host stage of batch k) driven by an in-memory stand-in of the worker: its
  polls hand out the records, its publish keeps the encoded events (no Kafka, no Redis:
  their round trips would only add host time for the cycle to hide).

Two cases: 320x240 frames with events at 320x240, and frames at the model's input side with
events at 1920x1080 (a 1080p camera as ingest sends it). For each, frames/s of the three,
overlapped / bare (goal >= 0.90: the device busy but for a tenth of the time) and overlapped
/ serial, then the overlapped cycle with ``gpu_half`` and with ``gpu_channels_last`` over
their own bare runs. Exits 1 when a goal is missed; without CUDA it says so and measures
nothing (``--device cpu`` runs the same code on the CPU, a check of the benchmark itself:
there the CPU worker keeps its plain cycle and no goal applies).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

import segcore
from segcore.data import synthetic
from services.common.events import MaskEvent, encode_event
from services.common.frames import DeadLetter, FrameLimits, FrameMessage, encode_frame
from services.common.metrics import PipelineMetrics
from services.common.settings import Settings
from services.segment.gpu import GpuCycle
from services.segment.infer import Item, class_names, infer, to_events
from services.segment.worker import SegmentOptions, SegmentWorker

GOAL = 0.90


class Record:
    """A consumer record held in memory."""

    def __init__(self, offset: int, message: FrameMessage) -> None:
        self.topic, self.partition, self.offset = "frames", 0, offset
        self.key, self.value, self.headers = message.to_record()


class MemoryWorker:
    """What ``GpuCycle`` uses of a SegmentWorker, in memory: polls hand out ``batches``,
    publish counts the events (and their bytes), commits record the handled offset."""

    mark_handled = SegmentWorker.mark_handled

    def __init__(self, model: torch.nn.Module, device: str, settings: Settings) -> None:
        self.settings, self.model, self.names, self.m = settings, model, class_names(model), "bench"
        self.options = SegmentOptions(device=device)
        self.metrics, self.limits, self.halt = PipelineMetrics(), FrameLimits(), threading.Event()
        self.batches: list[list[Record]] = []
        self._handled: dict[TopicPartition, OffsetAndMetadata] = {}
        self.committed = 0
        self.event_bytes = 0

    def collect(self, idle_timeout_ms: int = 500) -> tuple[list[Any], float]:
        if not self.batches:
            self.halt.wait(0.001)
            return [], 0.0
        return self.batches.pop(0), time.monotonic()

    def _lag(self) -> None:
        pass

    def _registered(self, records: list[Any]) -> set[str]:
        return {r.key.decode() for r in records}

    def dead_letter(self, record: Any, reason: DeadLetter, detail: str) -> None:
        raise RuntimeError(f"benchmark frame refused ({reason}): {detail}")

    def deliver(self, ready: list[Any], events: list[MaskEvent], payloads: list[Any]) -> int:
        self.event_bytes += sum(len(p[2]) for p in payloads)
        return len(events)

    def _commit(self) -> None:
        self.committed = max((o.offset for o in self._handled.values()), default=0)


def messages_of(
    count: int, size: tuple[int, int], frame_size: tuple[int, int]
) -> list[FrameMessage]:
    return [
        encode_frame(
            "cam",
            t,
            t / 5,
            time.time(),
            synthetic.frame(5 + t % 4, t, size)[0],
            frame_size=frame_size,
        )
        for t in range(count)
    ]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare(
    model: torch.nn.Module, device: str, batches: list[list[FrameMessage]], half: bool
) -> float:
    frames = [[torch.from_numpy(m.image()).to(device) for m in b] for b in batches]
    sync(device)
    start = time.perf_counter()
    for batch in frames:
        autocast = half and device.startswith("cuda")
        with torch.autocast("cuda", dtype=torch.float16) if autocast else contextlib.nullcontext():
            infer(model, batch)
    sync(device)
    return time.perf_counter() - start


def serial(model: torch.nn.Module, device: str, batches: list[list[FrameMessage]]) -> float:
    names = class_names(model)
    start = time.perf_counter()
    for batch in batches:
        items = [Item("cam", m.seq, m.pts, m.captured_at, m.image(), m.frame_size) for m in batch]
        events = to_events(items, infer(model, [i.rgb for i in items]), names, "bench", 0.3)
        [encode_event(e) for e in events]
    sync(device)
    return time.perf_counter() - start


def overlapped(
    model: torch.nn.Module, device: str, batches: list[list[FrameMessage]], settings: Settings
) -> float:
    worker = MemoryWorker(model, device, settings)
    offset, records = 0, []
    for batch in batches:
        records.append([Record(offset + i, m) for i, m in enumerate(batch)])
        offset += len(batch)
    cycle = GpuCycle(worker)  # type: ignore[arg-type]
    try:
        start = time.perf_counter()
        worker.batches = records
        while worker.committed < offset:
            cycle.step()
        return time.perf_counter() - start
    finally:
        cycle.close()


def median_rate(run: Callable[[], float], frames: int, repeat: int) -> float:
    run()  # warm-up: allocator, cuDNN autotuning, nvJPEG handles
    return frames / statistics.median(run() for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolact_r18_demo")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench/gpu_pipeline.py: no CUDA device on this machine: nothing measured")
        return 0
    side = segcore.input_side(args.model) or 540
    cases = {
        "320x240": ((240, 320), (320, 240)),
        f"1080p (frames {side * 16 // 9}x{side})": ((side, side * 16 // 9), (1920, 1080)),
    }
    count = args.batches * args.batch_size
    ok = True
    cuda = args.device.startswith("cuda")
    print(
        f"{args.model} on {args.device}, {args.batches} batches of {args.batch_size}, "
        f"median of {args.repeat}"
        + ("" if cuda else " (CPU: a check of this benchmark's code, not a measurement)")
    )
    for case, (size, frame_size) in cases.items():
        messages = messages_of(count, size, frame_size)
        batches = [messages[k : k + args.batch_size] for k in range(0, count, args.batch_size)]
        for variant, settings in (
            ("float32", Settings()),
            ("gpu_half", Settings(gpu_half=True)),
            ("gpu_channels_last", Settings(gpu_channels_last=True)),
        ):
            model = segcore.build(args.model, device=args.device, fuse=True)
            if settings.gpu_channels_last:
                model = model.to(memory_format=torch.channels_last)
            base = median_rate(
                partial(bare, model, args.device, batches, settings.gpu_half), count, args.repeat
            )
            over = median_rate(
                partial(overlapped, model, args.device, batches, settings), count, args.repeat
            )
            line = f"{case:>28} {variant:>18}: bare {base:7.1f} frames/s  overlapped {over:7.1f}"
            if variant == "float32":
                ser = median_rate(partial(serial, model, args.device, batches), count, args.repeat)
                line += f"  serial {ser:7.1f}  overlapped/serial {over / ser:.2f}"
            met = over / base >= GOAL
            ok = ok and (met or not cuda)
            verdict = f"goal >= {GOAL:.2f}{'' if met else ': MISSED'}" if cuda else "no goal"
            print(f"{line}  overlapped/bare {over / base:.2f} ({verdict})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
