"""Reading a /metrics exposition: ``sample_value`` and ``exposition_names`` on what
``PipelineMetrics`` serves."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.common.metrics import PipelineMetrics, exposition_names, sample_value


@pytest.fixture
def text() -> str:
    metrics = PipelineMetrics(CollectorRegistry())
    metrics.frames_dropped.labels("a", "latency-budget").inc(2)
    metrics.frames_dropped.labels("a", "other").inc(5)
    metrics.frames_dropped.labels("b", "latency-budget").inc(7)
    metrics.batch_size.labels("a").observe(3)
    metrics.batch_size.labels("a").observe(8)
    metrics.streams.labels("finished").set(1)
    return generate_latest(metrics.registry).decode()


def test_sample_value_sums_the_samples_whose_labels_include_the_given(text: str) -> None:
    assert sample_value(text, "segstream_frames_dropped_total") == 14
    assert sample_value(text, "segstream_frames_dropped_total", model="a") == 7
    assert sample_value(text, "segstream_frames_dropped_total", reason="latency-budget") == 9
    assert sample_value(text, "segstream_frames_dropped_total", model="b", reason="other") == 0


def test_sample_value_reads_histograms_and_gauges(text: str) -> None:
    assert sample_value(text, "segstream_batch_size_sum", model="a") == 11
    assert sample_value(text, "segstream_batch_size_count", model="a") == 2
    assert sample_value(text, "segstream_batch_size_bucket", model="a", le="4.0") == 1
    assert sample_value(text, "segstream_batch_size_bucket", model="a", le="+Inf") == 2
    assert sample_value(text, "segstream_streams", state="finished") == 1
    assert sample_value(text, "segstream_streams", state="running") == 0


def test_sample_value_is_zero_for_an_unknown_name_and_not_a_prefix_match(text: str) -> None:
    assert sample_value(text, "segstream_nothing_total") == 0
    assert sample_value(text, "segstream_frames_dropped") == 0  # the family, not a sample
    assert sample_value(text, "segstream_batch_size", model="a") == 0


def test_exposition_names(text: str) -> None:
    samples, declared = exposition_names(text)
    assert "segstream_frames_dropped_total" in samples
    assert "segstream_batch_size_bucket" in samples
    # declared by every family, sampled or not
    assert {"segstream_dlq_total", "segstream_dlq_created"} <= declared
    assert "segstream_dlq_total" not in samples
    assert {f"segstream_inference_seconds{s}" for s in ("_bucket", "_sum", "_count")} <= declared
    assert "segstream_streams" in declared and "segstream_streams_total" not in declared
    assert samples <= declared
