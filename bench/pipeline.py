"""The data path against baselines measured in the same run: real Kafka and Redis, real
``segstream ingest`` and ``segstream segment`` worker processes.

    .venv/bin/python bench/pipeline.py [--quick] [--threads N] [--batch-deadline-ms MS]

It starts its own Kafka, Redis and Prometheus (``services.infra``) in a temporary folder on
free loopback ports, uses a namespace of its own, and stops every server and process it
started when it ends, fails or is interrupted. The synthetic videos are written once into
``<cache_dir>/bench`` and reused. Three results, each with its goal:

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
   ``segcore.build("yolact_r18_demo", fuse=True)`` as the segment worker builds it,
   ``services.segment.infer.infer`` on the same decoded frames in batches of the segment
   worker's size, in this process, before the workers start and again after they stop (the
   mean is the baseline). Goal: pipeline / bare >= 0.85.
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
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

import av
import numpy as np
import torch
from PIL import Image

import segcore
from segcore.data import synthetic
from segcore.runtime import keep_heap
from services.common.events import MaskEvent, decode_event
from services.common.frames import encode_frame
from services.common.health import State, StreamHealth
from services.common.kafka import (
    TopicSpec,
    base_topics,
    ensure_topics,
    frames_spec,
    make_admin,
)
from services.common.kafka import make_producer as kafka_producer
from services.common.metrics import PipelineMetrics
from services.common.redis import make_redis, masks_key, status_key
from services.common.settings import Settings
from services.common.streams import StreamSpec, delete_stream, put_stream
from services.infra import Infra, fresh_settings
from services.infra.process import free_port
from services.ingest.source import Sampler, target_size
from services.ingest.worker import IngestOptions, StreamRunner
from services.segment.infer import infer
from services.segment.worker import SegmentOptions

ROOT = Path(__file__).resolve().parents[1]
MODEL = "yolact_r18_demo"
SMALL = (240, 320)  # (H, W)
SMALL_FPS = 15
BIG = (1080, 1920)
BIG_FPS = 30
SEED = 20261126
THROUGHPUT_GOAL = 0.85
LATENCY_GOAL_MS = 50.0
INGEST_GOAL = 0.7
LIVE_FPS = 5.0
LIVE_WARM_S = 3.0
OTHER_LOAD_LIMIT = 0.15  # cores of CPU used by other work before the figures are doubted
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    small_frames: int
    big_frames: int
    repeats: int
    warm_batches: int


FULL = Plan(small_frames=600, big_frames=300, repeats=3, warm_batches=5)
QUICK = Plan(small_frames=240, big_frames=90, repeats=1, warm_batches=3)


@dataclass
class Result:
    name: str
    baseline_name: str
    baseline: str
    measured: str
    ratio: str
    goal: str
    ok: bool | None  # None: not measured


@dataclass
class Cleanup:
    """What the run started, undone in reverse order whatever happens."""

    steps: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def add(self, name: str, step: Callable[[], object]) -> None:
        self.steps.append((name, step))

    def run(self) -> None:
        while self.steps:
            name, step = self.steps.pop()
            try:
                step()
            except Exception as exc:
                print(f"cleanup: {name} failed: {exc}", file=sys.stderr)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# CPU accounting ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def own_cpu_seconds() -> float:
    """This process's CPU time and that of its children waited for (ffmpeg runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def machine_seconds() -> tuple[float, float]:
    """(busy, stolen by the hypervisor) CPU seconds of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq) / CLOCK_TICK, steal / CLOCK_TICK


@dataclass
class Usage:
    seconds: float
    cpu: dict[str, float]
    other: float  # CPU seconds of everything else on the machine
    steal: float  # CPU seconds the hypervisor gave to other machines

    def report(self, what: str, frames: int = 0) -> str:
        """Each process's CPU in % of one core (and ms per frame when ``frames``)."""
        parts = []
        for name, used in [
            *self.cpu.items(),
            ("other work on the machine", self.other),
            ("stolen by the hypervisor", self.steal),
        ]:
            share = f"{name} {100 * used / self.seconds:.0f}%"
            parts.append(share + (f" ({1000 * used / frames:.1f} ms/frame)" if frames else ""))
        return f"CPU over {self.seconds:.1f} s of {what} (% of one core): " + ", ".join(parts)

    @property
    def other_cores(self) -> float:
        return (self.other + self.steal) / self.seconds


class Meter:
    """CPU time of named processes, and of the rest of the machine, over a phase; keeps the
    busiest phase's share of other work for the final verdict."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.worst_other = 0.0

    def _sample(self) -> tuple[float, tuple[float, float], dict[str, float]]:
        cpu = {"bench": own_cpu_seconds()}
        cpu.update({name: cpu_seconds(pid) for name, pid in self.pids.items()})
        return time.monotonic(), machine_seconds(), cpu

    def start(self) -> tuple[float, tuple[float, float], dict[str, float]]:
        return self._sample()

    def stop(self, started: tuple[float, tuple[float, float], dict[str, float]]) -> Usage:
        t0, (busy0, steal0), cpu0 = started
        t1, (busy1, steal1), cpu1 = self._sample()
        cpu = {name: cpu1[name] - cpu0.get(name, cpu1[name]) for name in cpu1}
        other = max(0.0, busy1 - busy0 - sum(cpu.values()))
        usage = Usage(t1 - t0, cpu, other, steal1 - steal0)
        self.worst_other = max(self.worst_other, usage.other_cores)
        return usage


# processes --------------------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment under which a child's ``Settings()`` equals ``settings``."""
    env = dict(os.environ)
    for name in (
        "run_dir",
        "cache_dir",
        "kafka_port",
        "kafka_controller_port",
        "redis_port",
        "prometheus_port",
        "namespace",
    ):
        value = getattr(settings, name)
        if value is not None:
            env[f"SEGSTREAM_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    """``python -m services.cli ARGS`` in a session of its own (Ctrl-C in the terminal does
    not reach it), with its own /metrics port and log file; ``stop`` sends SIGTERM to its
    group, then SIGKILL."""

    def __init__(
        self, name: str, args: list[str], settings: Settings, log_dir: Path, threads: int
    ) -> None:
        self.name = name
        self.metrics_port = free_port()
        env = settings_env(settings)
        env["SEGSTREAM_METRICS_PORT"] = str(self.metrics_port)
        env["SEGSTREAM_LOG_LEVEL"] = "INFO"
        env["OMP_NUM_THREADS"] = str(threads)
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not self.alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def wait_started(self, message: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while message not in self.log():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.2)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_text = head.partition("{")
        if metric_name == name and all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def histogram_mean(before: str, after: str, name: str, **labels: str) -> tuple[float, float]:
    """(mean, count) of a histogram's observations between two scrapes."""
    total = metric(after, f"{name}_sum", **labels) - metric(before, f"{name}_sum", **labels)
    count = metric(after, f"{name}_count", **labels) - metric(before, f"{name}_count", **labels)
    return (total / count if count else float("nan")), count


# frame encodings --------------------------------------------------------------------------


def _median_s(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _unpng(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.array(img.convert("RGB"))


def _unraw(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(shape).copy()


def encodings() -> None:
    """Encode/decode time and size per frame of JPEG q90, PNG and raw RGB."""
    print("\n## Frame encoding on Kafka (a synthetic frame; median of 5)")
    print("| frame | encoding | encode ms | decode ms | bytes | of raw |")
    print("|---|---|---:|---:|---:|---:|")
    for height, width in (SMALL, BIG):
        rgb, _ = synthetic.frame(SEED, 0, (height, width))
        message = encode_frame("s", 0, 0.0, 0.0, rgb, 90)
        png, raw = _png(rgb), rgb.tobytes()
        rows: list[tuple[str, Callable[[], object], Callable[[], object], int]] = [
            (
                "JPEG q90 (Pillow)",
                partial(encode_frame, "s", 0, 0.0, 0.0, rgb, 90),
                message.image,
                len(message.data),
            ),
            ("PNG (Pillow, level 6)", partial(_png, rgb), partial(_unpng, png), len(png)),
            ("raw RGB", rgb.tobytes, partial(_unraw, raw, rgb.shape), len(raw)),
        ]
        for name, encode, decode, size in rows:
            enc, dec = _median_s(encode, 5), _median_s(decode, 5)
            print(
                f"| {width}x{height} | {name} | {1000 * enc:.2f} | {1000 * dec:.2f} | {size:,} "
                f"| {size / rgb.nbytes:.3f} |"
            )


# 3. ingest --------------------------------------------------------------------------------


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
    resize = _median_s(lambda: frame.to_ndarray(format="rgb24", width=out_w, height=out_h), 9)
    jpeg = _median_s(lambda: encode_frame("s", 0, 0.0, 0.0, np.ascontiguousarray(rgb), 90), 9)
    return resize, jpeg


def ingest_fps(settings: Settings, video: Path, run: int) -> tuple[float, dict[str, float]]:
    """Frames decoded per second by a StreamRunner (the ingest worker's loop of a stream) on
    the file, producing to Kafka, and its per-frame figures."""
    metrics = PipelineMetrics()
    stream_id = f"ingest-1080p-{run}"
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


def ensure(settings: Settings, specs: list[TopicSpec]) -> None:
    admin = make_admin(settings)
    try:
        ensure_topics(admin, specs)
    finally:
        admin.close()


def ingest_bench(
    settings: Settings, video: Path, frames: int, repeats: int, ffmpeg: str | None, meter: Meter
) -> Result:
    name = f"ingest 1080p H.264, {frames} frames, 5 fps sampled"
    goal = f">= {INGEST_GOAL}"
    if ffmpeg is None:
        print("\nffmpeg is NOT installed: no ingest baseline (apt-get install -y ffmpeg)")
        return Result(name, "ffmpeg -f null decode", "-", "-", "-", goal, None)
    ensure(settings, [*base_topics(settings), frames_spec(settings, MODEL)])
    base, ours, alone = [], [], []
    details: dict[str, float] = {}
    started = meter.start()
    for run in range(repeats + 1):  # the first round warms the page cache and Kafka
        b = ffmpeg_decode_fps(ffmpeg, video, frames)
        p = pyav_decode_fps(video)
        o, details = ingest_fps(settings, video, run)
        if run:
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
        ratio >= INGEST_GOAL,
    )


# 1. throughput ----------------------------------------------------------------------------


def synthetic_video(cache: Path, seed: int, frames: int, size: tuple[int, int], fps: int) -> Path:
    """The synthetic scene as H.264, written once into ``cache`` and reused."""
    path = cache / f"scene{seed}-{size[1]}x{size[0]}-{frames}f-{fps}fps.mp4"
    if not path.is_file():
        print(f"writing {path} ...", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            partial_path = Path(tmp) / path.name
            synthetic.write_video(partial_path, seed, frames, size, fps=fps)
            partial_path.replace(path)
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def bare_fps(model: torch.nn.Module, frames: list[np.ndarray], batch: int) -> float:
    batches = [frames[i : i + batch] for i in range(0, len(frames), batch)]
    for warm in batches[:3]:
        infer(model, warm)
    start = time.perf_counter()
    for chunk in batches:
        infer(model, chunk)
    return len(frames) / (time.perf_counter() - start)


def stream_events(settings: Settings, stream_id: str) -> list[MaskEvent]:
    client = make_redis(settings, socket_timeout=10)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(masks_key(stream_id))  # type: ignore[assignment]
        return [decode_event(fields[b"event"]) for _, fields in entries]
    finally:
        client.close()


def event_count(settings: Settings, stream_id: str) -> int:
    client = make_redis(settings, socket_timeout=10)
    try:
        return int(client.xlen(masks_key(stream_id)))
    finally:
        client.close()


def rate(groups: list[list[int]], published: list[float], first: int, end: int) -> float:
    """Events/s of the batches ``groups[first:end]`` (first >= 1): their events over the
    time from the end of the batch before them to the end of the last (nan: too few)."""
    if end - first < 2:
        return float("nan")
    count = sum(len(g) for g in groups[first:end])
    return count / (published[groups[end - 1][-1]] - published[groups[first - 1][-1]])


def stream_state(settings: Settings, stream_id: str) -> str:
    client = make_redis(settings, socket_timeout=10)
    try:
        raw = client.hget(status_key(stream_id), "state")
        return raw.decode() if isinstance(raw, bytes) else ""
    finally:
        client.close()


def batches_of(published: list[float], gap_s: float) -> list[list[int]]:
    """Indices of events grouped by batch: a batch's events are published back to back,
    the next batch only after its inference."""
    groups: list[list[int]] = [[0]]
    for i in range(1, len(published)):
        if published[i] - published[i - 1] > gap_s:
            groups.append([])
        groups[-1].append(i)
    return groups


@dataclass
class Pipeline:
    settings: Settings
    ingest: WorkerProcess
    segment: WorkerProcess

    def check(self) -> None:
        for worker in (self.ingest, self.segment):
            if not worker.alive():
                code = worker.process.returncode
                raise RuntimeError(f"{worker.name} exited ({code}):\n{worker.tail()}")

    def wait_events(self, stream_id: str, count: int, timeout: float) -> None:
        """Until the stream has ``count`` events, or its file was read to the end and no
        event came for 5 s (frames dropped for their budget have none)."""
        deadline = time.monotonic() + timeout
        last, changed = -1, time.monotonic()
        while (got := event_count(self.settings, stream_id)) < count:
            self.check()
            now = time.monotonic()
            if got != last:
                last, changed = got, now
            elif now - changed > 5 and stream_state(self.settings, stream_id) == "finished":
                return
            if now > deadline:
                raise RuntimeError(f"{got} of {count} events of {stream_id} after {timeout:.0f} s")
            time.sleep(0.2)


def segment_report(before: str, after: str) -> str:
    parts = []
    for label, name in (
        ("waiting for the batch and JPEG decoding", "segstream_batch_wait_seconds"),
        ("inference", "segstream_inference_seconds"),
        ("RLE + events", "segstream_mask_encode_seconds"),
        ("Redis publish", "segstream_publish_seconds"),
    ):
        mean, _ = histogram_mean(before, after, name, model=MODEL)
        parts.append(f"{label} {1000 * mean:.1f} ms")
    size, count = histogram_mean(before, after, "segstream_batch_size", model=MODEL)
    return f"segment worker, mean per batch ({count:.0f} batches of {size:.1f} frames): " + (
        ", ".join(parts)
    )


def throughput(
    pipe: Pipeline,
    video: Path,
    frames: int,
    batch: int,
    bare: float,
    warm_batches: int,
    meter: Meter,
) -> float:
    """The pipeline's frames/s at capacity (see the module docstring)."""
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
        f"\n## Throughput: {SMALL[1]}x{SMALL[0]} H.264 file, {frames} frames, every frame\n"
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


# 2. latency -------------------------------------------------------------------------------


def sampled_count(frames: int, fps: float, video_fps: float) -> int:
    """How many of a video's frames the ingest Sampler keeps at ``fps``."""
    sampler = Sampler(fps)
    return sum(sampler.keep(t / video_fps) for t in range(frames))


def latency(pipe: Pipeline, video: Path, frames: int, meter: Meter) -> Result:
    stream_id = f"camera-{uuid.uuid4().hex[:8]}"
    expected = sampled_count(frames, LIVE_FPS, SMALL_FPS)
    spec = StreamSpec(
        id=stream_id,
        url=str(video),
        model=MODEL,
        fps=LIVE_FPS,
        realtime=True,
        latency_budget_ms=5000,  # a camera's
    )
    put_stream(pipe.settings, spec)
    pipe.wait_events(stream_id, 1, 60)
    # The segment worker's metrics from the end of the warm-up on: the frames captured
    # from then on are segmented after this scrape.
    first = stream_events(pipe.settings, stream_id)[0].captured_at
    time.sleep(max(0.0, first + LIVE_WARM_S - time.time()))
    seg0 = pipe.segment.metrics()
    started = meter.start()
    pipe.wait_events(stream_id, expected, frames / SMALL_FPS + 60)
    usage = meter.stop(started)
    seg1 = pipe.segment.metrics()
    delete_stream(pipe.settings, stream_id)
    events = stream_events(pipe.settings, stream_id)
    steady = [e for e in events if e.captured_at >= first + LIVE_WARM_S]
    if len(steady) < 10:
        raise RuntimeError(f"only {len(steady)} events after the warm-up")
    lat = np.array([e.published_at - e.captured_at for e in steady]) * 1000
    infer_s, batches = histogram_mean(seg0, seg1, "segstream_inference_seconds", model=MODEL)
    dropped = metric(seg1, "segstream_frames_dropped_total") - metric(
        seg0, "segstream_frames_dropped_total"
    )
    p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
    infer_ms = 1000 * infer_s
    over50, over99 = p50 - infer_ms, p99 - infer_ms
    period = np.diff([e.captured_at for e in steady]) * 1000
    print(
        f"\n## Latency: the {SMALL[1]}x{SMALL[0]} file played in real time ({SMALL_FPS} fps), "
        f"sampled at {LIVE_FPS:g} fps\n"
        f"{len(events)} events of {expected} frames ({len(steady)} after the first "
        f"{LIVE_WARM_S:g} s), {dropped:.0f} dropped for their budget, frames "
        f"{np.median(period):.0f} ms apart (median); "
        f"capture-to-publish p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lat.max():.1f} ms; "
        f"inference {infer_ms:.1f} ms per batch ({batches:.0f} batches); minus inference: "
        f"p50 {over50:.1f} ms, p99 {over99:.1f} ms\n"
        f"{segment_report(seg0, seg1)}\n"
        f"{usage.report('the camera after the warm-up', len(steady))}"
    )
    return Result(
        f"latency, file played as a {SMALL_FPS} fps camera, sampled at {LIVE_FPS:g} fps",
        "inference per batch",
        f"{infer_ms:.1f} ms",
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        f"p99 {p99 / infer_ms:.1f}x; p99 - inference {over99:.1f} ms",
        f"p99 - inference <= {LATENCY_GOAL_MS:.0f} ms",
        over99 <= LATENCY_GOAL_MS,
    )


# main -------------------------------------------------------------------------------------


def start_pipeline(
    settings: Settings,
    log_dir: Path,
    threads: int,
    options: SegmentOptions,
    cleanup: Cleanup,
    meter: Meter,
) -> Pipeline:
    segment = WorkerProcess(
        "segment",
        [
            "segment",
            *("--model", MODEL, "--batch-size", str(options.batch_size)),
            *("--batch-deadline-ms", str(options.batch_deadline_ms)),
        ],
        settings,
        log_dir,
        threads,
    )
    cleanup.add("segment worker", segment.stop)
    ingest = WorkerProcess("ingest", ["ingest"], settings, log_dir, 1)
    cleanup.add("ingest worker", ingest.stop)
    segment.wait_started("segment worker started", 120)
    ingest.wait_started("ingest worker started", 120)
    meter.pids.update(segment=segment.pid, ingest=ingest.pid)
    time.sleep(3)  # both consumers join their groups
    return Pipeline(settings, ingest, segment)


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
    encodings()

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
    ingest = ingest_bench(ingest_settings, big, plan.big_frames, plan.repeats, ffmpeg, meter)

    model = segcore.build(MODEL, fuse=True)
    frames = decoded_frames(small)
    started = meter.start()
    bare_before = bare_fps(model, frames, options.batch_size)
    usage = meter.stop(started)
    print(f"\nbare inference before the workers: {bare_before:.1f} frames/s; {usage.report('it')}")

    pipe = start_pipeline(settings, logs, args.threads, options, cleanup, meter)
    try:
        warm_up(pipe, small, plan.small_frames, bare_before)
        fps = throughput(
            pipe,
            small,
            plan.small_frames,
            options.batch_size,
            bare_before,
            plan.warm_batches,
            meter,
        )
        lat = latency(pipe, small, plan.small_frames, meter)
    except BaseException:
        for worker in (pipe.segment, pipe.ingest):
            print(f"--- {worker.name} log (tail)\n{worker.tail()}", file=sys.stderr)
        raise
    for worker in (pipe.segment, pipe.ingest):
        worker.stop()
        meter.pids.pop(worker.name)
    started = meter.start()
    bare_after = bare_fps(model, frames, options.batch_size)
    usage = meter.stop(started)
    bare = (bare_before + bare_after) / 2
    print(
        f"\nbare inference after the workers stopped: {bare_after:.1f} frames/s; "
        f"{usage.report('it')}\nthroughput baseline: the mean, {bare:.1f} frames/s; "
        f"pipeline / bare = {fps / bare:.2f}"
    )
    tput = Result(
        f"throughput {MODEL}, {SMALL[1]}x{SMALL[0]} file, batch {options.batch_size}",
        "bare inference (before / after)",
        f"{bare:.1f} frames/s ({bare_before:.1f} / {bare_after:.1f})",
        f"{fps:.1f} frames/s",
        f"{fps / bare:.2f}x",
        f">= {THROUGHPUT_GOAL}",
        fps / bare >= THROUGHPUT_GOAL,
    )
    return [tput, lat, ingest]


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
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
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
    print(f"\n## Results ({time.monotonic() - started:.0f} s in all)")
    header = ("result", "baseline", "baseline value", "measured", "ratio", "goal", "verdict")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        verdict = "not measured" if r.ok is None else ("PASS" if r.ok else "MISS")
        cells = (r.name, r.baseline_name, r.baseline, r.measured, r.ratio, r.goal, verdict)
        print("| " + " | ".join(cells) + " |")
    if meter.worst_other > OTHER_LOAD_LIMIT:
        print(
            f"WARNING: other work on the machine (or the hypervisor) took up to "
            f"{meter.worst_other:.2f} of a core "
            "during a phase: these figures are not reliable; run again on a quiet machine"
        )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
