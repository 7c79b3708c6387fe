"""``segstream run SOURCE --model M``: decode, sample, segment and write mask events as JSON
lines, in one process, with bounded queues (no Kafka, no Redis): the embedded pipeline for
one camera or one file on a laptop.

A decoder thread opens the source with PyAV (RTSP over TCP, open and read timeouts), samples
frames to the target fps by their presentation timestamps and puts them on a bounded queue;
the main thread takes batches (up to ``batch_size``, never waiting long for a full one), runs
the model and writes one event per sampled frame. From a live source, a full queue drops its
oldest frame (counted) so latency and memory stay bounded; from a file, decoding waits.
"""

from __future__ import annotations

import queue
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import av
import numpy as np
import torch
from torch import Tensor, nn

from segcore.ops import masks_to_rle
from services.common.events import Instance, MaskEvent, encode_event

LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


class SourceError(RuntimeError):
    """A source that cannot be opened or read, named without its credentials."""


def redact(url: str) -> str:
    """The URL with any ``user:password@`` replaced, for logs and messages."""
    return _CREDENTIALS.sub("***@", url)


@dataclass
class RunOptions:
    source: str
    model: str
    fps: float | None = None  # None: every frame
    max_frames: int | None = None
    min_score: float = 0.3
    batch_size: int = 4
    queue_size: int = 8
    stream_id: str = "local"
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0


@dataclass
class RunStats:
    decoded: int = 0
    sampled: int = 0
    dropped: int = 0
    published: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Frame:
    seq: int
    pts: float
    captured_at: float
    rgb: np.ndarray  # (H, W, 3) uint8


def open_source(options: RunOptions) -> Any:
    """Open with PyAV; RTSP over TCP; timeouts in microseconds as FFmpeg wants them."""
    source = options.source
    is_live = source.startswith(LIVE_SCHEMES)
    if not is_live and not Path(source.removeprefix("file://")).is_file():
        raise SourceError(f"{redact(source)}: no such file")
    av_options: dict[str, str] = {}
    if source.startswith(("rtsp://", "rtsps://")):
        av_options["rtsp_transport"] = "tcp"
    if is_live:
        av_options["rw_timeout"] = str(int(options.read_timeout_s * 1_000_000))
    try:
        return av.open(
            source.removeprefix("file://"),
            options=av_options,
            timeout=(options.open_timeout_s, options.read_timeout_s),
        )
    except (av.FFmpegError, OSError) as exc:
        # FFmpeg's message repeats the URL: redact it too.
        raise SourceError(redact(f"cannot open {source}: {exc}")) from None


def sampled_frames(container: Any, fps: float | None) -> Iterator[tuple[float, np.ndarray]]:
    """(pts in seconds, RGB frame) of the first video stream, thinned to ``fps`` by pts."""
    if not container.streams.video:
        raise SourceError("the source has no video stream")
    stream = container.streams.video[0]
    period = 1.0 / fps if fps else 0.0
    next_pts: float | None = None
    for index, frame in enumerate(container.decode(stream)):
        pts = (
            float(frame.time)
            if frame.time is not None
            else index / float(stream.average_rate or 30)
        )
        if next_pts is not None and pts + 1e-6 < next_pts:
            continue
        next_pts = pts + period if next_pts is None else max(next_pts + period, pts)
        yield pts, frame.to_ndarray(format="rgb24")


def instances_of(
    output: dict[str, Tensor], class_names: list[str], min_score: float
) -> tuple[Instance, ...]:
    """Instances of one model output (torchvision's dict) scoring at least ``min_score``,
    masks RLE-encoded at the frame's resolution."""
    keep = output["scores"] >= min_score
    binary = output["masks"][keep][:, 0] > 0.5
    rles = masks_to_rle(binary.cpu())
    out = []
    for label, score, box, rle in zip(
        output["labels"][keep].tolist(),
        output["scores"][keep].tolist(),
        output["boxes"][keep].tolist(),
        rles,
        strict=True,
    ):
        counts = rle["counts"]
        assert isinstance(counts, bytes)
        height, width = binary.shape[-2:]
        out.append(
            Instance(
                label=class_names[label] if 0 <= label < len(class_names) else str(label),
                class_id=int(label),
                score=float(score),
                box=(box[0], box[1], box[2], box[3]),
                mask_size=(int(height), int(width)),
                mask_counts=counts.decode("ascii"),
            )
        )
    return tuple(out)


def segment(
    model: nn.Module, frames: list[Frame], options: RunOptions, model_name: str
) -> list[MaskEvent]:
    """Run the model on a batch of frames; one event per frame."""
    device = next(model.parameters()).device
    images = [torch.from_numpy(f.rgb).permute(2, 0, 1).to(device).float().div(255) for f in frames]
    with torch.inference_mode():
        outputs = model(images)
    names = list(getattr(model, "class_names", []) or [])
    events = []
    for frame, output in zip(frames, outputs, strict=True):
        height, width = frame.rgb.shape[:2]
        events.append(
            MaskEvent(
                stream_id=options.stream_id,
                seq=frame.seq,
                pts=frame.pts,
                captured_at=frame.captured_at,
                published_at=time.time(),
                model=model_name,
                width=width,
                height=height,
                instances=instances_of(output, names, options.min_score),
            )
        )
    return events


_END = object()


def run(options: RunOptions, out: TextIO | None = None, model: nn.Module | None = None) -> RunStats:
    """Run the pipeline until the source ends, ``max_frames`` or an error; events to ``out``."""
    import segcore

    out = out or sys.stdout
    if options.batch_size < 1 or options.queue_size < 1:
        raise ValueError("batch_size and queue_size must be >= 1")
    stats = RunStats()
    container = open_source(options)
    model = model or segcore.build(options.model)
    live = options.source.startswith(LIVE_SCHEMES)
    frames: queue.Queue[object] = queue.Queue(maxsize=options.queue_size)
    stop = threading.Event()

    def decode() -> None:
        try:
            for seq, (pts, rgb) in enumerate(sampled_frames(container, options.fps)):
                if stop.is_set() or (options.max_frames is not None and seq >= options.max_frames):
                    break
                stats.sampled += 1
                item = Frame(seq, pts, time.time(), rgb)
                if live:
                    while True:
                        try:
                            frames.put_nowait(item)
                            break
                        except queue.Full:
                            try:
                                frames.get_nowait()
                                stats.dropped += 1
                            except queue.Empty:
                                pass
                else:
                    frames.put(item)
        except (av.FFmpegError, OSError, SourceError) as exc:
            stats.errors.append(redact(f"{options.source}: {exc}"))
        finally:
            container.close()
            frames.put(_END)

    thread = threading.Thread(target=decode, name="segstream-decode", daemon=True)
    thread.start()
    finished = False
    try:
        while not finished:
            batch: list[Frame] = []
            item = frames.get()
            deadline = time.monotonic() + 0.05
            while item is not _END:
                assert isinstance(item, Frame)
                batch.append(item)
                if len(batch) >= options.batch_size:
                    break
                try:
                    item = frames.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
            finished = item is _END
            if batch:
                for event in segment(model, batch, options, options.model):
                    out.write(encode_event(event).decode() + "\n")
                    stats.published += 1
                out.flush()
    finally:
        stop.set()
        thread.join(timeout=10)
    stats.decoded = stats.sampled
    return stats
