"""Prometheus metrics shared by the segstream processes, and the /metrics server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PipelineMetrics:
    """Frame counters and latency of one process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.frames_produced = Counter(
            "segstream_frames_produced_total",
            "Frames written to Kafka",
            ["model"],
            registry=self.registry,
        )
        self.frames_consumed = Counter(
            "segstream_frames_consumed_total",
            "Frames read from Kafka",
            ["model"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "segstream_events_published_total",
            "Mask events written to Redis",
            ["model"],
            registry=self.registry,
        )
        self.capture_to_publish = Histogram(
            "segstream_capture_to_publish_seconds",
            "Time from frame capture to its mask event in Redis",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on (host, port); port 0 picks a free one. Returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
