"""``segstream run SOURCE --model M``: decode, sample, segment and write mask events as JSON
lines, in one process, with bounded queues (no Kafka, no Redis): the embedded pipeline for
one camera or one file on a laptop.

A decoder thread opens the source with PyAV (RTSP over TCP, open and read timeouts), samples
frames to the target fps by their presentation timestamps (the ingest worker's
:func:`~services.ingest.source.sample_frames`) and puts them on a bounded queue;
the main thread takes batches (up to ``batch_size``; from a file waiting up to 50 ms for a
full one, from a live source only what is queued already), runs
the model, tracks the instances (services/segment/tracks.py, as the segment worker: each
instance gets its ``track_id``; with ``publisher``, the tracking document starts from the one
in Redis and is written with each event) and writes one event per sampled frame. From a
live source, a full queue drops its oldest frame (counted) so latency and memory stay
bounded; from a file, decoding waits.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import av.error
from torch import nn

from services.common.events import encode_event
from services.common.redis import EventPublisher, entry_id, tracking_documents
from services.common.streams import is_live, redact
from services.ingest.source import SourceError, classify, open_source, sample_frames, timing
from services.segment.infer import Item, class_names, infer, load_model, to_events
from services.segment.tracks import StreamTracks

__all__ = ["RunOptions", "RunStats", "SourceError", "redact", "run"]


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


_END = object()


def take_batch(frames: queue.Queue[object], size: int, wait_s: float) -> tuple[list[Item], bool]:
    """Up to ``size`` items: the first as it comes, then those that come within ``wait_s``
    of it (none waited for when 0); and whether the end of the source was reached."""
    batch: list[Item] = []
    item = frames.get()
    deadline = time.monotonic() + wait_s
    while item is not _END:
        assert isinstance(item, Item)
        batch.append(item)
        if len(batch) >= size:
            break
        try:
            remaining = deadline - time.monotonic()
            item = frames.get(timeout=remaining) if remaining > 0 else frames.get_nowait()
        except queue.Empty:
            break
    return batch, item is _END


def run(
    options: RunOptions,
    out: TextIO | None = None,
    model: nn.Module | None = None,
    publisher: EventPublisher | None = None,
) -> RunStats:
    """Run the pipeline until the source ends, ``max_frames`` or an error; events to ``out``
    and, when given, to Redis through ``publisher`` (stream entry, channel, latest key)."""
    out = out or sys.stdout
    if options.batch_size < 1 or options.queue_size < 1:
        raise ValueError("batch_size and queue_size must be >= 1")
    stats = RunStats()
    container = open_source(
        options.source,
        open_timeout_s=options.open_timeout_s,
        read_timeout_s=options.read_timeout_s,
    )
    model = model or load_model(options.model, "cpu")  # as the segment worker
    live = is_live(options.source)
    tracks = StreamTracks(
        (lambda ids: tracking_documents(publisher.client, ids))
        if publisher is not None
        else (lambda ids: {}),
        lambda _stream_id: ((), ()),
        # A file is decoded as fast as the model takes its frames (bursts, then waits):
        # its frames are tracked on their pts, a camera's on their capture time.
        media_time=lambda _stream_id: not live,
    )
    frames: queue.Queue[object] = queue.Queue(maxsize=options.queue_size)
    stop = threading.Event()

    def counted(stream: Any) -> Iterator[Any]:
        for frame in container.decode(stream):
            stats.decoded += 1
            yield frame

    def decode() -> None:
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate, offset = timing(stream)
            sampled = sample_frames(counted(stream), rate=rate, offset=offset, fps=options.fps)
            for seq, frame in enumerate(sampled):
                if stop.is_set() or (options.max_frames is not None and seq >= options.max_frames):
                    break
                stats.sampled += 1
                item = Item(options.stream_id, seq, frame.pts, frame.captured_at, frame.rgb())
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
        except (av.error.FFmpegError, OSError) as exc:
            stats.errors.append(str(classify(exc, options.source, live=live, opening=False)))
        finally:
            container.close()
            frames.put(_END)

    thread = threading.Thread(target=decode, name="segstream-decode", daemon=True)
    thread.start()
    finished = False
    try:
        # A camera's next frame is a frame period away: waiting for it only adds latency,
        # so from a live source a batch is what is queued already.
        wait_s = 0.0 if live else 0.05
        while not finished:
            batch, finished = take_batch(frames, options.batch_size, wait_s)
            if batch:
                outputs = infer(model, [i.rgb for i in batch])
                names = class_names(model)
                events = to_events(batch, outputs, names, options.model, options.min_score)
                tracked = tracks.track(events)
                events = [frame.event for frame in tracked]
                payloads = [encode_event(event) for event in events]
                for payload in payloads:
                    out.write(payload.decode() + "\n")
                    stats.published += 1
                out.flush()
                if publisher is not None:
                    publisher.publish(
                        [
                            (e.stream_id, entry_id(e.captured_at, e.seq), p)
                            for e, p in zip(events, payloads, strict=True)
                        ],
                        tracks=[(f.document, f.analytics) for f in tracked],
                    )
    finally:
        stop.set()
        thread.join(timeout=10)
    return stats
