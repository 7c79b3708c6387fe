"""Phase 1 of bench/pipeline.py: the pipeline's frames/s at capacity (a file sent far faster
than the model segments it, every frame kept) against the bare model in this process,
``infer`` in batches of the segment worker's size on the same decoded frames (shrunk to the
model's input side as ingest sends them). Two files: 320x240 (goal: pipeline / bare >=
0.90) and 1080p, sent at the model's input side with events at 1920x1080 (the masks pasted
and encoded at the source's size; goal >= 0.85)."""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

import av
import numpy as np
import torch

from bench.harness import (
    MODEL,
    SMALL,
    Meter,
    Pipeline,
    histogram_mean,
    segment_report,
    stream_events,
)
from services.common.streams import StreamSpec, delete_stream, put_stream
from services.ingest.source import target_size
from services.segment.infer import infer

GOAL = 0.90  # the 320x240 file
GOAL_BIG = 0.85  # the 1080p file: events at 1920x1080


def shrunk_frames(path: Path, side: int | None) -> list[np.ndarray]:
    """Every frame of a video file as ingest sends it: (h, w, 3) uint8 RGB with the shorter
    side shrunk to ``side`` (``services.ingest.source.target_size``, PyAV's scaler)."""
    with av.open(str(path)) as container:
        out = []
        for frame in container.decode(video=0):
            width, height = target_size(frame.width, frame.height, side)
            out.append(frame.to_ndarray(format="rgb24", width=width, height=height))
        return out


def bare_fps(model: torch.nn.Module, frames: list[np.ndarray], batch: int) -> float:
    """Frames/s of ``infer`` on ``frames`` in batches of ``batch``, after 3 warm-up batches."""
    batches = [frames[i : i + batch] for i in range(0, len(frames), batch)]
    for warm in batches[:3]:
        infer(model, warm)
    start = time.perf_counter()
    for chunk in batches:
        infer(model, chunk)
    return len(frames) / (time.perf_counter() - start)


def batches_of(published: list[float], gap_s: float) -> list[list[int]]:
    """Indices of events grouped by batch: a batch's events are published back to back,
    the next batch only after its inference."""
    groups: list[list[int]] = [[0]]
    for i in range(1, len(published)):
        if published[i] - published[i - 1] > gap_s:
            groups.append([])
        groups[-1].append(i)
    return groups


def rate(groups: list[list[int]], published: list[float], first: int, end: int) -> float:
    """Events/s of the batches ``groups[first:end]`` (first >= 1): their events over the
    time from the end of the batch before them to the end of the last (nan: too few)."""
    if end - first < 2:
        return float("nan")
    count = sum(len(g) for g in groups[first:end])
    return count / (published[groups[end - 1][-1]] - published[groups[first - 1][-1]])


def warm_up(pipe: Pipeline, video: Path, frames: int, bare: float) -> None:
    """The file once through the fresh pipeline, not measured: the broker's JIT compiles
    its produce and fetch paths (a fresh broker takes several times the CPU per frame of a
    warm one: bench/broker.py), the workers and Redis run their first frames."""
    stream_id = f"warm-up-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    put_stream(pipe.settings, StreamSpec(id=stream_id, url=str(video), model=MODEL, fps=60))
    pipe.wait_events(stream_id, frames, 60 + 5 * frames / bare)
    delete_stream(pipe.settings, stream_id)
    print(
        f"\nwarm-up: the same file through the fresh pipeline in "
        f"{time.monotonic() - started:.1f} s (not measured)"
    )


def run(
    pipe: Pipeline,
    video: Path,
    frames: int,
    batch: int,
    bare: float,
    warm_batches: int,
    meter: Meter,
    source: tuple[int, int] = (SMALL[1], SMALL[0]),
) -> float:
    """The pipeline's frames/s at capacity (see bench/pipeline.py's docstring) on a file of
    ``source`` (width, height) frames; every event must be at that size."""
    stream_id = f"throughput-{uuid.uuid4().hex[:8]}"
    seg0, ing0 = pipe.segment.metrics(), pipe.ingest.metrics()
    started = meter.start()
    registered = time.time()
    put_stream(pipe.settings, StreamSpec(id=stream_id, url=str(video), model=MODEL, fps=60))
    pipe.wait_events(stream_id, frames, 60 + 5 * frames / bare)
    usage = meter.stop(started)
    seg1, ing1 = pipe.segment.metrics(), pipe.ingest.metrics()
    events = stream_events(pipe.settings, stream_id)
    if [e.seq for e in events] != list(range(frames)):
        raise RuntimeError(f"the events are not seq 0..{frames - 1}")
    if {(e.width, e.height) for e in events} != {source}:
        raise RuntimeError(f"events are not all at the source size {source}")
    published = [e.published_at for e in events]
    groups = batches_of(published, gap_s=0.4 * batch / bare)
    if len(groups) <= warm_batches + 2:
        raise RuntimeError(f"only {len(groups)} batches: too few frames to measure")
    fps = rate(groups, published, warm_batches, len(groups))
    counted = sum(len(g) for g in groups[warm_batches:])
    sizes = [len(g) for g in groups[warm_batches:]]
    produced = events[-1].captured_at  # when ingest sent the last frame
    decode, _ = histogram_mean(ing0, ing1, "segstream_decode_seconds")
    send, _ = histogram_mean(ing0, ing1, "segstream_encode_seconds")
    print(
        f"\n## Throughput: {source[0]}x{source[1]} H.264 file, {frames} frames, every frame\n"
        f"pipeline {fps:.1f} frames/s over {counted} events in {len(sizes)} batches after "
        f"{warm_batches} warm-up batches (sizes {min(sizes)}..{max(sizes)}, mean "
        f"{statistics.mean(sizes):.1f}); ingest had sent every frame "
        f"{produced - registered:.1f} s after the registration, the first event came after "
        f"{published[0] - registered:.1f} s, the last after {published[-1] - registered:.1f} "
        f"s ({frames / (published[-1] - registered):.1f} frames/s from the registration)\n"
        f"{segment_report(seg0, seg1)}\n"
        f"ingest worker per frame: decoding {1000 * decode:.2f} ms, resize+JPEG+send "
        f"{1000 * send:.2f} ms\n{usage.report('the throughput run', frames)}"
    )
    return fps
