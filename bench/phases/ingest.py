"""Phase 3 of bench/pipeline.py: the ingest worker's own loop (a ``StreamRunner`` in this
process: open, PyAV decode, 5 fps sampling, resize, JPEG q90, produce to the real Kafka) on a
1080p H.264 file, in decoded frames/s, against ``ffmpeg -benchmark -i FILE -f null -``.
Goal: >= 0.7."""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from pathlib import Path

import av
import numpy as np

from bench.harness import BIG, BIG_FPS, MODEL, Meter, Result, median_s
from services.common.frames import encode_frame
from services.common.health import State, StreamHealth
from services.common.kafka import base_topics, bootstrap_topics, frames_spec
from services.common.kafka import make_producer as kafka_producer
from services.common.metrics import PipelineMetrics
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec
from services.ingest.runner import IngestOptions, StreamRunner
from services.ingest.source import target_size

GOAL = 0.7


def ffmpeg_decode_fps(ffmpeg: str, video: Path, frames: int) -> float:
    out = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-benchmark", "-i", str(video), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"rtime=([0-9.]+)s", out.stderr)
    if match is None:
        raise RuntimeError(f"no rtime in ffmpeg -benchmark output:\n{out.stderr[-800:]}")
    decoded = re.findall(r"frame=\s*(\d+)", out.stderr)
    if decoded and int(decoded[-1]) != frames:
        raise RuntimeError(f"ffmpeg decoded {decoded[-1]} frames, the file has {frames}")
    return frames / float(match.group(1))


def pyav_decode_fps(video: Path) -> float:
    """PyAV decoding alone, threaded as the ingest worker sets it up."""
    start = time.perf_counter()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = sum(1 for _ in container.decode(stream))
    return count / (time.perf_counter() - start)


def sampled_frame_costs(video: Path, side: int) -> tuple[float, float]:
    """(resize to RGB, JPEG q90) seconds of one 1080p frame, as StreamRunner._send does."""
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
    out_w, out_h = target_size(frame.width, frame.height, side)
    rgb = frame.to_ndarray(format="rgb24", width=out_w, height=out_h)
    resize = median_s(lambda: frame.to_ndarray(format="rgb24", width=out_w, height=out_h), 9)
    jpeg = median_s(lambda: encode_frame("s", 0, 0.0, 0.0, np.ascontiguousarray(rgb), 90), 9)
    return resize, jpeg


def ingest_fps(settings: Settings, video: Path, round_: int) -> tuple[float, dict[str, float]]:
    """Frames decoded per second by a StreamRunner (the ingest worker's loop of a stream) on
    the file, producing to Kafka, and its per-frame figures."""
    metrics = PipelineMetrics()
    stream_id = f"ingest-1080p-{round_}"
    spec = StreamSpec(id=stream_id, url=str(video), model=MODEL)  # fps 5, the default
    producer = kafka_producer(
        settings, max_block_ms=5000, linger_ms=2, retries=5, compression_type=None
    )  # as IngestWorker makes it
    client = make_redis(settings, socket_timeout=5)
    try:
        health = StreamHealth(client, stream_id, "bench")
        runner = StreamRunner(
            spec, 0, producer, health, metrics, IngestOptions(), frames_spec(settings, MODEL).name
        )
        start, cpu = time.perf_counter(), time.process_time()
        runner.run()  # in this thread: open, decode, sample, resize, encode, produce
        producer.flush(timeout=30)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if health.state != State.FINISHED:
            raise RuntimeError(f"ingest of {video.name}: {health.state} {health.message}")
    finally:
        producer.close(timeout=5)
        client.close()

    def value(name: str, **labels: str) -> float:
        return float(metrics.registry.get_sample_value(name, labels) or 0.0)

    decoded = value("segstream_frames_decoded_total", stream=stream_id)
    sampled = value("segstream_frames_sampled_total", stream=stream_id)
    produced = value("segstream_frames_produced_total", model=MODEL)
    if produced != sampled or not decoded:
        raise RuntimeError(f"{decoded:.0f} decoded, {sampled:.0f} sampled, {produced:.0f} sent")
    return decoded / elapsed, {
        "decoded": decoded,
        "sampled": sampled,
        "side": float(runner.side or 0),
        "decode_ms": 1000 * value("segstream_decode_seconds_sum", stream=stream_id) / decoded,
        "send_ms": 1000 * value("segstream_encode_seconds_sum", stream=stream_id) / sampled,
        "elapsed_ms": 1000 * elapsed / decoded,
        "cpu_ms": 1000 * cpu / decoded,  # this process: FFmpeg's threads, Kafka's sender
    }


def run(
    settings: Settings, video: Path, frames: int, repeats: int, ffmpeg: str | None, meter: Meter
) -> Result:
    """The median of ``repeats`` rounds after a discarded one (page cache, Kafka warm-up)."""
    name = f"ingest 1080p H.264, {frames} frames, 5 fps sampled"
    goal = f">= {GOAL}"
    if ffmpeg is None:
        print("\nffmpeg is NOT installed: no ingest baseline (apt-get install -y ffmpeg)")
        return Result(name, "ffmpeg -f null decode", "-", "-", "-", goal, None)
    bootstrap_topics(settings, [*base_topics(settings), frames_spec(settings, MODEL)])
    base, ours, alone = [], [], []
    details: dict[str, float] = {}
    started = meter.start()
    for round_ in range(repeats + 1):  # the first round warms the page cache and Kafka
        b = ffmpeg_decode_fps(ffmpeg, video, frames)
        p = pyav_decode_fps(video)
        o, details = ingest_fps(settings, video, round_)
        if round_:
            base.append(b)
            alone.append(p)
            ours.append(o)
    usage = meter.stop(started)
    b, o, p = statistics.median(base), statistics.median(ours), statistics.median(alone)
    resize, jpeg = sampled_frame_costs(video, int(details["side"]))
    print(
        f"\n## Ingest: {BIG[1]}x{BIG[0]} H.264, {frames} frames at {BIG_FPS} fps "
        f"(median of {repeats})\n"
        f"ffmpeg -f null decode {b:.1f} frames/s; PyAV decode alone {p:.1f} frames/s "
        f"({p / b:.2f}x); StreamRunner {o:.1f} frames/s ({o / b:.2f}x): "
        f"{details['decoded']:.0f} decoded, {details['sampled']:.0f} sampled, shrunk to a "
        f"{details['side']:.0f} px shorter side, JPEG q90, produced to Kafka\n"
        f"StreamRunner per decoded frame: {details['elapsed_ms']:.2f} ms in all "
        f"({details['cpu_ms']:.2f} ms CPU, every thread of this process), decoding "
        f"{details['decode_ms']:.2f} ms (its metric); per sampled frame: resize+JPEG+send "
        f"{details['send_ms']:.2f} ms (its metric; alone: resize to RGB {1000 * resize:.2f} "
        f"ms, JPEG {1000 * jpeg:.2f} ms)\n"
        f"{usage.report('the ingest rounds (ffmpeg, PyAV alone, StreamRunner)')}"
    )
    ratio = o / b
    return Result(
        name,
        "ffmpeg -f null decode",
        f"{b:.1f} frames/s",
        f"{o:.1f} frames/s",
        f"{ratio:.2f}x",
        goal,
        ratio >= GOAL,
    )
