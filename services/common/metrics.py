"""Prometheus metrics of the segstream processes, and the /metrics server.

Every process registers the same families (one :class:`PipelineMetrics`), so a dashboard or
rule can rely on the names whichever process it scrapes; each process increments the ones of
its stage. Labels are model names, stream ids, states and drop reasons: never URLs.
``sample_value`` and ``exposition_names`` read what a /metrics endpoint serves (the tests'
and the benchmarks' one parser, prometheus_client's own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.parser import text_string_to_metric_families

from services.common.frames import DeadLetter, Dropped

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
DWELL_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
ANALYTICS_NAMES = 16  # zone (and line) names per stream with series of their own
OTHER = "_other"  # where the names past those count
STATES = ("pending", "connecting", "running", "stalled", "backoff", "error", "finished")


class PipelineMetrics:
    """The metric families of one process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if registry is None:
            ProcessCollector(registry=r)  # process_start_time_seconds, cpu, memory, fds

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def histogram(
            name: str, doc: str, labels: list[str], buckets: tuple[float, ...] = FAST_BUCKETS
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=r)

        # ingest
        self.frames_decoded = counter(
            "segstream_frames_decoded_total", "Frames decoded from sources", ["stream"]
        )
        self.frames_sampled = counter(
            "segstream_frames_sampled_total", "Frames kept by fps sampling", ["stream"]
        )
        self.frames_produced = counter(
            "segstream_frames_produced_total", "Frames written to Kafka", ["model"]
        )
        self.reconnects = counter(
            "segstream_reconnects_total", "Source reconnect attempts", ["stream"]
        )
        self.decode_seconds = histogram(
            "segstream_decode_seconds", "Decoding one frame (sampled or not)", ["stream"]
        )
        self.encode_seconds = histogram(
            "segstream_encode_seconds", "Resizing and encoding one sampled frame", ["stream"]
        )
        self.produce_seconds = histogram(
            "segstream_produce_seconds",
            "From send to the broker's acknowledgement",
            ["model"],
            LATENCY_BUCKETS,
        )
        self.streams = Gauge(
            "segstream_streams", "Streams owned by this process, by state", ["state"], registry=r
        )
        for state in STATES:
            self.streams.labels(state)
        self.stream_staleness = Gauge(
            "segstream_stream_staleness_seconds",
            "How far a running stream's newest mask event in Redis trails now (its capture "
            "time; since the stream started running while it has none), per stream its "
            "ingest worker owns",
            ["stream"],
            registry=r,
        )
        self._stale_streams: set[str] = set()
        # segment
        self.frames_consumed = counter(
            "segstream_frames_consumed_total", "Frames read from Kafka", ["model"]
        )
        self.frames_dropped = counter(
            "segstream_frames_dropped_total",
            "Frames not segmented, by reason",
            ["model", "reason"],
        )
        self.dlq = counter(
            "segstream_dlq_total", "Records sent to the dead-letter topic", ["model", "reason"]
        )
        self.events_published = counter(
            "segstream_events_published_total", "Mask events written to Redis", ["model"]
        )
        self.duplicates = counter(
            "segstream_duplicates_total",
            "Redelivered frames whose event was already in Redis",
            ["model"],
        )
        self.batch_wait_seconds = histogram(
            "segstream_batch_wait_seconds",
            "From a batch's first frame to inference",
            ["model"],
            LATENCY_BUCKETS,
        )
        self.batch_size = histogram(
            "segstream_batch_size", "Frames per inference batch", ["model"], BATCH_BUCKETS
        )
        self.inference_seconds = histogram(
            "segstream_inference_seconds",
            "Preprocessing and inference of one batch (JPEG decoding is in batch wait)",
            ["model"],
            LATENCY_BUCKETS,
        )
        self.mask_encode_seconds = histogram(
            "segstream_mask_encode_seconds", "Encoding one batch's masks as RLE", ["model"]
        )
        self.publish_seconds = histogram(
            "segstream_publish_seconds", "Writing one batch's events to Redis", ["model"]
        )
        self.capture_to_publish = histogram(
            "segstream_capture_to_publish_seconds",
            "Time from frame capture to its mask event in Redis",
            ["model"],
            LATENCY_BUCKETS,
        )
        self.consumer_lag = Gauge(
            "segstream_consumer_lag",
            "Frames in Kafka not yet consumed by this worker: end offsets of its partitions "
            "(read every few seconds) minus its positions",
            ["model"],
            registry=r,
        )
        # segment: zones and lines (record_analytics)
        self.zone_events = counter(
            "segstream_zone_events_total",
            "Zone events of tracks, by stream, zone and type (enter|exit|loiter)",
            ["stream", "zone", "type"],
        )
        self.line_crossings = counter(
            "segstream_line_crossings_total",
            "Line crossings of tracks, by stream, line and direction (forward|backward)",
            ["stream", "line", "direction"],
        )
        self.zone_occupancy = Gauge(
            "segstream_zone_occupancy",
            "Tracks in a zone as of its stream's newest published frame",
            ["stream", "zone"],
            registry=r,
        )
        self.zone_dwell = histogram(
            "segstream_zone_dwell_seconds",
            "Seconds of capture time tracks spent in a zone, observed at their exit",
            ["stream", "zone"],
            DWELL_BUCKETS,
        )
        self._analytics_names: dict[tuple[str, str], set[str]] = {}
        self.gpu_memory = Gauge(
            "segstream_gpu_memory_bytes",
            "CUDA memory of PyTorch's caching allocator, by device and kind (allocated|reserved)",
            ["device", "kind"],
            registry=r,
        )

        # api
        self.api_requests = counter(
            "segstream_api_requests_total",
            "API requests by method, route and status",
            ["method", "route", "status"],
        )
        self.api_request_seconds = histogram(
            "segstream_api_request_seconds",
            "API request handling time",
            ["method", "route"],
            LATENCY_BUCKETS,
        )
        self.subscribers = Gauge(
            "segstream_subscribers", "Open event subscriptions", ["kind"], registry=r
        )
        self.subscribers_dropped = counter(
            "segstream_subscribers_dropped_total",
            "Subscriptions closed by the server, by reason",
            ["kind", "reason"],
        )

    def start_model(self, model: str) -> None:
        """Create a segment worker's series at 0, so rate() sees their first increments."""
        for family in (self.frames_consumed, self.events_published, self.duplicates):
            family.labels(model)
        for dropped in (Dropped.LATENCY_BUDGET, Dropped.UNREGISTERED):
            self.frames_dropped.labels(model, dropped)
        for reason in DeadLetter:
            self.dlq.labels(model, reason)

    def start_stream(self, stream: str) -> None:
        """Create an ingest stream's series at 0 (see ``start_model``)."""
        for family in (self.frames_decoded, self.frames_sampled, self.reconnects):
            family.labels(stream)

    def set_staleness(self, values: Mapping[str, float | None]) -> None:
        """``segstream_stream_staleness_seconds`` of the streams in ``values`` (stream id ->
        seconds); a stream absent or None (not running, no longer owned) loses its series."""
        shown = {stream: value for stream, value in values.items() if value is not None}
        for stream in self._stale_streams - shown.keys():
            self.stream_staleness.remove(stream)
        for stream, value in shown.items():
            self.stream_staleness.labels(stream).set(value)
        self._stale_streams = set(shown)

    def _bounded(self, stream: str, kind: str, name: str) -> str:
        """``name`` as a label: the first ``ANALYTICS_NAMES`` zone (or line) names of a
        stream are their own, any later one is ``_other`` (the registry allows 16 of each:
        only renames add more)."""
        names = self._analytics_names.setdefault((stream, kind), set())
        if name in names:
            return name
        if len(names) < ANALYTICS_NAMES:
            names.add(name)
            return name
        return OTHER

    def record_analytics(
        self,
        stream: str,
        events: Iterable[Mapping[str, Any]],
        counts: Mapping[str, Any] | None = None,
    ) -> None:
        """Count one frame's analytics events of ``stream`` (bodies of
        ``segcore.tracking.Analytics.update``, or their events' JSON): zone events by type,
        crossings by direction, dwell at exit, and occupancy after each zone event. With
        ``counts`` (``Analytics.counts()``), the occupancy of every zone in it is set, and
        zones of the stream no longer in it lose their occupancy series. Bodies that are not
        zone or line events are skipped."""
        for event in events:
            kind = event.get("type")
            if kind in ("zone.enter", "zone.exit", "zone.loiter") and isinstance(
                event.get("zone"), str
            ):
                zone = self._bounded(stream, "zone", event["zone"])
                self.zone_events.labels(stream, zone, kind.removeprefix("zone.")).inc()
                dwell = event.get("dwell_s")
                if kind == "zone.exit" and isinstance(dwell, int | float):
                    self.zone_dwell.labels(stream, zone).observe(dwell)
                occupancy = event.get("occupancy")
                if isinstance(occupancy, int) and zone != OTHER:
                    self.zone_occupancy.labels(stream, zone).set(occupancy)
            elif kind == "line.cross" and isinstance(event.get("line"), str):
                direction = event.get("direction")
                if direction in ("forward", "backward"):
                    line = self._bounded(stream, "line", event["line"])
                    self.line_crossings.labels(stream, line, direction).inc()
        if counts is not None:
            zones = counts.get("zones") or {}
            shown = set()
            for name, value in zones.items():
                zone = self._bounded(stream, "zone", str(name))
                occupancy = value.get("occupancy") if isinstance(value, Mapping) else None
                if zone != OTHER and isinstance(occupancy, int):
                    self.zone_occupancy.labels(stream, zone).set(occupancy)
                    shown.add(zone)
            for zone in self._analytics_names.get((stream, "zone"), set()) - shown:
                with contextlib.suppress(KeyError):
                    self.zone_occupancy.remove(stream, zone)

    def analytics_streams(self) -> set[str]:
        """The streams with zone or line series."""
        return {stream for stream, _kind in self._analytics_names}

    def forget_analytics(self, stream: str) -> None:
        """Remove every zone and line series of ``stream`` (a stream removed)."""
        zones = self._analytics_names.pop((stream, "zone"), set()) | {OTHER}
        lines = self._analytics_names.pop((stream, "line"), set()) | {OTHER}
        removals = [
            *((self.zone_events, (z, t)) for z in zones for t in ("enter", "exit", "loiter")),
            *((self.zone_occupancy, (z,)) for z in zones),
            *((self.zone_dwell, (z,)) for z in zones),
            *((self.line_crossings, (x, d)) for x in lines for d in ("forward", "backward")),
        ]
        for family, labels in removals:
            with contextlib.suppress(KeyError):
                family.remove(stream, *labels)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on (host, port); port 0 picks a free one. Returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


# Reading an exposition (the text /metrics serves): tests, benchmarks, tools.

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def sample_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of a text exposition named ``name`` whose labels include
    ``labels``; 0 when none does.

    ``name`` is the sample's full name (``segstream_frames_dropped_total``,
    ``segstream_batch_size_sum``); ``labels`` may be a subset, so
    ``sample_value(text, "segstream_frames_dropped_total")`` adds up every model and reason.
    """
    return float(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )
    )


def exposition_names(text: str) -> tuple[set[str], set[str]]:
    """(names of the samples present, every sample name the declared families can have) of a
    text exposition: a counter ``x`` declares ``x_total`` and ``x_created``, a histogram its
    ``_bucket``, ``_count``, ``_sum`` and ``_created``, a gauge its own name."""
    samples: set[str] = set()
    declared: set[str] = set()
    for family in text_string_to_metric_families(text):
        samples.update(sample.name for sample in family.samples)
        declared.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return samples, declared
