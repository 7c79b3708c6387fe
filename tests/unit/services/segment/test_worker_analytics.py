"""The segment worker's zone and line series of streams the registry no longer holds are
removed (and their tracking state in memory dropped), those of registered streams kept."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest

from services.common.metrics import PipelineMetrics
from services.common.streams import StreamSpec
from services.segment.worker import SegmentWorker


class Registry:
    def __init__(self, *ids: str) -> None:
        self.specs = {i: StreamSpec(id=i, url="rtsp://cam/x", model="m") for i in ids}

    def get(self, stream_id: str) -> StreamSpec | None:
        return self.specs.get(stream_id)


class Tracks:
    """What the worker uses of StreamTracks: the streams it holds, and forgetting them."""

    def __init__(self, *held: str) -> None:
        self.held = set(held)
        self.forgotten: list[str] = []

    def streams(self) -> set[str]:
        return set(self.held)

    def forget(self, stream_ids: Iterable[str]) -> None:
        ids = list(stream_ids)
        self.held -= set(ids)
        self.forgotten += ids


class StandIn:
    """What forget_removed uses of a SegmentWorker."""

    def __init__(self, registry: Registry) -> None:
        self.metrics = PipelineMetrics(CollectorRegistry())
        self.registry = registry
        self.tracks = Tracks("kept", "gone", "plain-gone")  # plain: a stream without zones


def forget_removed(worker: StandIn) -> None:
    SegmentWorker.forget_removed(worker)  # type: ignore[arg-type]


def series(worker: StandIn, stream: str) -> list[str]:
    text = generate_latest(worker.metrics.registry).decode()
    return [
        line
        for line in text.splitlines()
        if line.startswith(("segstream_zone", "segstream_line")) and f'stream="{stream}"' in line
    ]


def test_a_removed_streams_zone_and_line_series_go() -> None:
    worker = StandIn(Registry("kept"))
    bodies = [
        {"type": "zone.enter", "zone": "door", "occupancy": 1, "count": 1},
        {"type": "zone.exit", "zone": "door", "occupancy": 0, "dwell_s": 2.0},
        {"type": "line.cross", "line": "gate", "direction": "forward", "count": 1},
    ]
    for stream in ("kept", "gone"):
        worker.metrics.record_analytics(stream, bodies)
    assert series(worker, "gone") and series(worker, "kept")
    forget_removed(worker)
    assert series(worker, "gone") == []
    assert series(worker, "kept")
    assert worker.tracks.forgotten == ["gone", "plain-gone"]
    forget_removed(worker)  # once gone, not again
    assert worker.tracks.forgotten == ["gone", "plain-gone"]
