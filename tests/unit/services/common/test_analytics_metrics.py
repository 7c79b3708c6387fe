"""Zone and line metrics of a frame's analytics events: counted per stream, zone or line,
type or direction; occupancy after each event and from the counts; dwell at exit; label sets
bounded per stream; a stream's series removed with it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from services.common.metrics import ANALYTICS_NAMES, OTHER, PipelineMetrics, sample_value


def text(metrics: PipelineMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def enter(zone: str, occupancy: int, count: int = 1) -> dict[str, object]:
    return {
        "type": "zone.enter",
        "track_id": 1,
        "label": "car",
        "class_id": 2,
        "zone": zone,
        "occupancy": occupancy,
        "count": count,
    }


def test_events_are_counted_by_zone_type_line_and_direction() -> None:
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.record_analytics("cam", [enter("door", 1), enter("door", 2, 2), enter("lot", 1)])
    metrics.record_analytics(
        "cam",
        [
            {"type": "zone.exit", "zone": "door", "dwell_s": 12.0, "occupancy": 1},
            {"type": "zone.loiter", "zone": "lot", "dwell_s": 30.0, "occupancy": 1},
            {"type": "line.cross", "line": "gate", "direction": "forward", "count": 1},
            {"type": "line.cross", "line": "gate", "direction": "forward", "count": 2},
            {"type": "line.cross", "line": "gate", "direction": "backward", "count": 1},
            {"type": "line.cross", "line": "gate", "direction": "up"},  # not a direction
            {"type": "zone.wave", "zone": "door"},  # not an analytics event: skipped
        ],
    )
    metrics.record_analytics("other", [enter("door", 1)])
    t = text(metrics)
    zone_events = "segstream_zone_events_total"
    assert sample_value(t, zone_events, stream="cam", zone="door", type="enter") == 2
    assert sample_value(t, zone_events, stream="cam", zone="door", type="exit") == 1
    assert sample_value(t, zone_events, stream="cam", zone="lot", type="loiter") == 1
    assert sample_value(t, zone_events, stream="other") == 1
    crossings = "segstream_line_crossings_total"
    assert sample_value(t, crossings, stream="cam", line="gate", direction="forward") == 2
    assert sample_value(t, crossings, stream="cam", line="gate", direction="backward") == 1
    assert sample_value(t, crossings) == 3
    assert sample_value(t, "segstream_zone_occupancy", stream="cam", zone="door") == 1
    assert sample_value(t, "segstream_zone_dwell_seconds_sum", stream="cam", zone="door") == 12
    assert sample_value(t, "segstream_zone_dwell_seconds_count", stream="cam") == 1  # exits only


def test_counts_set_occupancy_and_drop_zones_no_longer_there() -> None:
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.record_analytics("cam", [enter("door", 1)], {"zones": {"door": {"occupancy": 1}}})
    metrics.record_analytics("cam", [], {"zones": {"lot": {"occupancy": 3}}, "lines": {}})
    t = text(metrics)
    assert sample_value(t, "segstream_zone_occupancy", stream="cam", zone="lot") == 3
    assert 'zone="door"' not in "\n".join(
        line for line in t.splitlines() if line.startswith("segstream_zone_occupancy{")
    )


def test_label_sets_are_bounded_per_stream() -> None:
    metrics = PipelineMetrics(CollectorRegistry())
    names = [f"z{i}" for i in range(ANALYTICS_NAMES + 5)]
    metrics.record_analytics("cam", [enter(n, 1) for n in names])
    metrics.record_analytics("cam", [enter("z0", 2)])  # a name it has stays its own
    t = text(metrics)
    zones = {
        line.split('zone="')[1].split('"')[0]
        for line in t.splitlines()
        if line.startswith("segstream_zone_events_total{")
    }
    assert zones == {*names[:ANALYTICS_NAMES], OTHER}
    assert sample_value(t, "segstream_zone_events_total", zone=OTHER) == 5
    assert sample_value(t, "segstream_zone_events_total", zone="z0") == 2
    metrics.record_analytics("next", [enter("z20", 1)])  # bounds are per stream
    assert (
        sample_value(text(metrics), "segstream_zone_events_total", stream="next", zone="z20") == 1
    )


def test_a_forgotten_stream_loses_its_series() -> None:
    metrics = PipelineMetrics(CollectorRegistry())
    events = [
        enter("door", 1),
        {"type": "zone.exit", "zone": "door", "dwell_s": 1.0, "occupancy": 0},
        {"type": "line.cross", "line": "gate", "direction": "backward", "count": 1},
    ]
    metrics.record_analytics("cam", events)
    metrics.record_analytics("keep", events)
    metrics.forget_analytics("cam")
    t = text(metrics)
    assert 'stream="cam"' not in t
    assert sample_value(t, "segstream_line_crossings_total", stream="keep") == 1
