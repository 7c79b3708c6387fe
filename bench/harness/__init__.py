"""What the data-path benchmarks share: CPU accounting (``meter``), the worker processes and
the Redis reads of their events (``workers``), undoing what a run started (``cleanup``), the
results table (``report``) and the synthetic scene they measure on (``scene``)."""

from bench.harness.cleanup import Cleanup, raise_on_signals
from bench.harness.meter import Meter, Usage, cpu_seconds, median_s
from bench.harness.report import Result, print_results
from bench.harness.scene import (
    BIG,
    BIG_FPS,
    MODEL,
    SEED,
    SMALL,
    SMALL_FPS,
    decoded_frames,
    synthetic_video,
)
from bench.harness.workers import (
    Pipeline,
    histogram_mean,
    segment_report,
    start_pipeline,
    start_worker,
    stream_events,
)

__all__ = [
    "BIG",
    "BIG_FPS",
    "MODEL",
    "SEED",
    "SMALL",
    "SMALL_FPS",
    "Cleanup",
    "Meter",
    "Pipeline",
    "Result",
    "Usage",
    "cpu_seconds",
    "decoded_frames",
    "histogram_mean",
    "median_s",
    "print_results",
    "raise_on_signals",
    "segment_report",
    "start_pipeline",
    "start_worker",
    "stream_events",
    "synthetic_video",
]
