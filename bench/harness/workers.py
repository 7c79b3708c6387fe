"""The pipeline under measurement: ``segstream ingest`` and ``segstream segment`` as child
processes (``services.infra.children``), the Redis reads of what they publish, and the
figures of their /metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness.cleanup import Cleanup
from bench.harness.meter import Meter
from bench.harness.scene import MODEL
from services.common.events import MaskEvent, decode_event
from services.common.metrics import sample_value
from services.common.redis import make_redis, masks_key, status_key
from services.common.settings import Settings
from services.infra.children import Child
from services.segment.worker import SegmentOptions


def start_worker(
    name: str, args: list[str], settings: Settings, log_dir: Path, threads: int
) -> Child:
    """``segstream ARGS`` logging at INFO to ``<log_dir>/<name>.log``, with its own /metrics
    port and ``threads`` torch threads (``OMP_NUM_THREADS``)."""
    return Child(
        name,
        args,
        settings,
        log_dir / f"{name}.log",
        env={"SEGSTREAM_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": str(threads)},
    )


def stream_events(settings: Settings, stream_id: str) -> list[MaskEvent]:
    """The stream's mask events in Redis, in stream order."""
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


def stream_state(settings: Settings, stream_id: str) -> str:
    client = make_redis(settings, socket_timeout=10)
    try:
        raw = client.hget(status_key(stream_id), "state")
        return raw.decode() if isinstance(raw, bytes) else ""
    finally:
        client.close()


@dataclass
class Pipeline:
    settings: Settings
    ingest: Child
    segment: Child

    def check(self) -> None:
        """Raise (with the end of its log) when a worker has exited."""
        for worker in (self.ingest, self.segment):
            worker.check()

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


def start_pipeline(
    settings: Settings,
    log_dir: Path,
    threads: int,
    options: SegmentOptions,
    cleanup: Cleanup,
    meter: Meter,
) -> Pipeline:
    """A segment worker of ``threads`` threads and a one-thread ingest worker, started and
    registered with ``cleanup`` and ``meter``."""
    segment = start_worker(
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
    ingest = start_worker("ingest", ["ingest"], settings, log_dir, 1)
    cleanup.add("ingest worker", ingest.stop)
    segment.wait_log("segment worker started", 120)
    ingest.wait_log("ingest worker started", 120)
    meter.pids.update(segment=segment.pid, ingest=ingest.pid)
    time.sleep(3)  # both consumers join their groups
    return Pipeline(settings, ingest, segment)


def histogram_mean(before: str, after: str, name: str, **labels: str) -> tuple[float, float]:
    """(mean, count) of a histogram's observations between two scrapes."""

    def delta(sample: str) -> float:
        return sample_value(after, sample, **labels) - sample_value(before, sample, **labels)

    total, count = delta(f"{name}_sum"), delta(f"{name}_count")
    return (total / count if count else float("nan")), count


def segment_report(before: str, after: str) -> str:
    """The segment worker's mean time per batch in each step, between two scrapes."""
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
