"""The data path against baselines measured in the same run: real Kafka and Redis, real
``segstream ingest`` and ``segstream segment`` worker processes.

    .venv/bin/python bench/pipeline.py [--quick] [--threads N] [--batch-deadline-ms MS]
    .venv/bin/python -m bench.pipeline [...]   (the same, from the repository root)

It starts its own Kafka, Redis and Prometheus (``services.infra``) in a temporary folder on
free loopback ports, uses a namespace of its own, and stops every server and process it
started when it ends, fails or is interrupted. The synthetic videos are written once into
``<cache_dir>/bench`` and reused. Four results, each with its goal:

1. Throughput. A synthetic 320x240 H.264 file (600 frames at 15 fps; 240 with ``--quick``)
   is registered as a file stream with ``fps=60``: the Sampler keeps every frame (frames
   1/15 s apart are never closer than its 1/60 s period) and, a file having no latency
   budget, none is dropped. Ingest sends the whole file within a few seconds, far faster
   than the model segments it, so the segment worker always finds full batches waiting in
   Kafka: the pipeline runs at its capacity (for most of the span with ingest idle; the
   CPU ingest takes per frame is printed). Pipeline frames/s: the events in Redis after
   the warm-up batches, over the span of their ``published_at`` (batches are told apart
   by the gaps inference leaves between them). The same file goes through the fresh
   pipeline once before, unmeasured: a fresh broker's JIT takes several times the CPU per
   frame of a warm one (bench/broker.py), which is start-up, not the pipeline's steady
   cost. Baseline: the bare model,
   ``load_model("yolact_r18_demo", "cpu")``, the served build the segment worker runs,
   ``services.segment.infer.infer`` on the same decoded frames in batches of the segment
   worker's size, in this process, before the workers start and again after they stop (the
   mean is the baseline). Goal: pipeline / bare >= 0.90.
   Then the same with the 1080p file of phase 3 (a camera at 1920x1080): ingest sends its
   frames shrunk to the model's input side (456x256), the segment worker pastes the masks
   and encodes them at 1920x1080 (``paste_masks(threshold=)``, ``masks_to_rle``); the
   baseline is ``infer`` on the file's frames shrunk as ingest shrinks them. Goal: >= 0.85.
2. Latency. A camera below capacity: the same file registered with ``realtime=True`` (the
   ingest worker plays it at its own 15 fps, as a camera delivers frames), sampled at 5 fps
   (the default) with a camera's 5 s budget. Registered as a plain file it would not do:
   ingest reads a file as fast as it decodes, frames queue in Kafka and the queueing is all
   one would measure. Each event's ``published_at - captured_at`` (``captured_at`` is when
   ingest took the decoded frame) minus the mean inference time of a batch in this phase,
   from the segment worker's ``segstream_inference_seconds`` (sum/count before and after);
   events captured in the first 3 s are warm-up and left out. Baseline: that inference
   time. Goal: p99 - inference <= 50 ms.
3. Ingest. A synthetic 1080p H.264 file (300 frames at 30 fps; 90 with ``--quick``) through
   the ingest worker's own code: a ``StreamRunner`` run in this process (open, PyAV decode,
   the stream's default 5 fps sampling, resize to the model's input side, JPEG q90, produce
   to the real Kafka), frames decoded per second, over ``ffmpeg -benchmark -i FILE -f null
   -`` decode frames/s (its ``rtime``); both decode with FFmpeg's automatic threads; median
   of 3 runs after a discarded one (1 with ``--quick``). Goal: >= 0.7. Also printed: encode
   and decode time and bytes per frame of JPEG q90 (the frame codec's own functions), PNG
   and raw RGB at 320x240 and 1920x1080, the evidence behind JPEG frames on Kafka.

Threads: the segment worker's torch gets ``--threads`` threads (default: every CPU), as a
worker on a machine of its own would, and the bare baseline the same number, so the
throughput ratio includes what the rest of the pipeline (ingest, Kafka, Redis on the same
cores) takes from inference. The ingest worker gets ``OMP_NUM_THREADS=1``: it runs no torch
ops (FFmpeg's decoder threads do not read that variable). Each phase prints where the CPU
went, per process (from /proc) and for everything else on the machine: other work on the
machine makes the figures unreliable, and the run says so. Exits 1 when a goal is missed.

The code: ``bench/harness`` (worker processes, CPU meters, cleanup, the synthetic videos, the
results table), one module per measurement in ``bench/phases`` (``encodings``, ``ingest``,
``throughput``, ``latency``), and the run's order of phases here.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (`python bench/pipeline.py`), sys.path starts with bench/: put the repository
# root there instead, as `python -m bench.pipeline` does, so that `bench` imports as a
# package. The imports below need it.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass

import av
import torch

import segcore
from bench.harness import (
    BIG,
    BIG_FPS,
    MODEL,
    SEED,
    SMALL,
    SMALL_FPS,
    Cleanup,
    Meter,
    Result,
    decoded_frames,
    print_results,
    raise_on_signals,
    start_pipeline,
    synthetic_video,
)
from bench.phases import encodings, ingest, latency, throughput
from segcore.runtime import keep_heap
from services.common.settings import Settings
from services.infra import Infra, fresh_settings
from services.segment.infer import load_model
from services.segment.worker import SegmentOptions


@dataclass(frozen=True)
class Plan:
    small_frames: int
    big_frames: int
    repeats: int
    warm_batches: int


FULL = Plan(small_frames=600, big_frames=300, repeats=3, warm_batches=5)
QUICK = Plan(small_frames=240, big_frames=90, repeats=1, warm_batches=3)


def run(args: argparse.Namespace, cleanup: Cleanup, meter: Meter) -> list[Result]:
    plan = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    heap = keep_heap()  # as `segstream segment` and `segstream ingest` do
    ffmpeg = shutil.which("ffmpeg")
    options = SegmentOptions(batch_deadline_ms=args.batch_deadline_ms)
    work = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    cleanup.add("temporary folder", lambda: shutil.rmtree(work, ignore_errors=True))
    logs = work / "logs"
    logs.mkdir()
    print(
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({args.threads} threads), PyAV "
        f"{av.__version__}, ffmpeg: {ffmpeg or 'NOT INSTALLED (apt-get install -y ffmpeg)'}; "
        f"segment worker: batch {options.batch_size}, deadline {options.batch_deadline_ms} ms; "
        f"malloc tuned (segcore.runtime.keep_heap): {heap}"
    )
    cache = Settings().cache_dir / "bench"
    small = synthetic_video(cache, SEED, plan.small_frames, SMALL, SMALL_FPS)
    big = synthetic_video(cache, SEED + 1, plan.big_frames, BIG, BIG_FPS)
    encodings.run()

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    settings = fresh_settings(work / "infra", namespace=namespace)
    infra = Infra(settings)
    cleanup.add("kafka, redis, prometheus", infra.down)
    print(f"\nstarting Kafka, Redis, Prometheus in {work} (namespace {namespace}) ...", flush=True)
    infra.up(log=False)
    for component in infra.components:
        record = component.proc.record()
        if record is not None:
            meter.pids[component.name] = record.pid

    ingest_settings = settings.model_copy(update={"namespace": f"{namespace}-ingest"})
    ingest_result = ingest.run(ingest_settings, big, plan.big_frames, plan.repeats, ffmpeg, meter)

    model = load_model(MODEL, "cpu")  # the build the segment worker serves
    frames = decoded_frames(small)
    big_frames = throughput.shrunk_frames(big, segcore.input_side(MODEL))
    started = meter.start()
    bare_before = throughput.bare_fps(model, frames, options.batch_size)
    bare_big_before = throughput.bare_fps(model, big_frames, options.batch_size)
    usage = meter.stop(started)
    print(
        f"\nbare inference before the workers: {bare_before:.1f} frames/s at {SMALL[1]}x"
        f"{SMALL[0]}, {bare_big_before:.1f} frames/s on the 1080p file's frames at "
        f"{big_frames[0].shape[1]}x{big_frames[0].shape[0]}; {usage.report('it')}"
    )

    pipe = start_pipeline(settings, logs, args.threads, options, cleanup, meter)
    try:
        throughput.warm_up(pipe, small, plan.small_frames, bare_before)
        fps = throughput.run(
            pipe,
            small,
            plan.small_frames,
            options.batch_size,
            bare_before,
            plan.warm_batches,
            meter,
        )
        fps_big = throughput.run(
            pipe,
            big,
            plan.big_frames,
            options.batch_size,
            bare_big_before,
            plan.warm_batches,
            meter,
            source=(BIG[1], BIG[0]),
        )
        latency_result = latency.run(pipe, small, plan.small_frames, meter)
    except BaseException:
        for worker in (pipe.segment, pipe.ingest):
            print(f"--- {worker.name} log (tail)\n{worker.tail(15)}", file=sys.stderr)
        raise
    for worker in (pipe.segment, pipe.ingest):
        worker.stop(timeout=15)
        meter.pids.pop(worker.name)
    started = meter.start()
    bare_after = throughput.bare_fps(model, frames, options.batch_size)
    bare_big_after = throughput.bare_fps(model, big_frames, options.batch_size)
    usage = meter.stop(started)
    bare = (bare_before + bare_after) / 2
    bare_big = (bare_big_before + bare_big_after) / 2
    print(
        f"\nbare inference after the workers stopped: {bare_after:.1f} frames/s, "
        f"{bare_big_after:.1f} on the 1080p file's; {usage.report('it')}\nthroughput "
        f"baselines: the means, {bare:.1f} and {bare_big:.1f} frames/s; pipeline / bare = "
        f"{fps / bare:.2f} and {fps_big / bare_big:.2f}"
    )
    shrunk = f"{big_frames[0].shape[1]}x{big_frames[0].shape[0]}"
    throughput_results = [
        Result(
            f"throughput {MODEL}, {name}, batch {options.batch_size}",
            "bare inference (before / after)",
            f"{base:.1f} frames/s ({before:.1f} / {after:.1f})",
            f"{measured:.1f} frames/s",
            f"{measured / base:.2f}x",
            f">= {goal}",
            measured / base >= goal,
        )
        for name, base, before, after, measured, goal in (
            (f"{SMALL[1]}x{SMALL[0]} file", bare, bare_before, bare_after, fps, throughput.GOAL),
            (
                f"1080p file sent at {shrunk}, events at {BIG[1]}x{BIG[0]}",
                bare_big,
                bare_big_before,
                bare_big_after,
                fps_big,
                throughput.GOAL_BIG,
            ),
        )
    ]
    return [*throughput_results, latency_result, ingest_result]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer frames, one repeat")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads of the segment worker and of the bare baseline (default: all)",
    )
    parser.add_argument(
        "--batch-deadline-ms",
        type=int,
        default=SegmentOptions().batch_deadline_ms,
        help="the segment worker's batch deadline (default: its own)",
    )
    args = parser.parse_args()
    raise_on_signals()
    cleanup = Cleanup()
    meter = Meter()
    started = time.monotonic()
    try:
        results = run(args, cleanup, meter)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what was started", file=sys.stderr)
        return 130
    finally:
        cleanup.run()
    ok = print_results(results, time.monotonic() - started, meter.worst_other)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
