"""The served build in a real segment worker process: it builds what the registry names
for its architecture on the CPU, compiles (warm-up) before it joins its consumer group, and
after a restart its first event comes within the usual latency, not after a compilation."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from segcore.data import synthetic
from segcore.registry import served_config
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from tests.integration.workers import Worker, wait_events, wait_for

pytestmark = pytest.mark.integration

# Served with compiled parts on the CPU (its registry metadata); random weights will do.
MODEL = "yolact_r50"
SIZE = (240, 320)
FPS = 2
# Warm-up compiles the network: minutes on a small, busy machine.
READY_S = 1500


def _record(worker: Worker, msg: str) -> dict[str, Any] | None:
    return next((r for r in worker.log_records() if r.get("msg") == msg), None)


def _ready(worker: Worker) -> tuple[dict[str, Any], list[str]]:
    """The worker's "model built as served" record once it has started its loop, and the
    order of its first log messages."""

    def started() -> bool:
        worker.check()
        return _record(worker, "segment worker started") is not None

    wait_for(started, READY_S, f"{worker.name} to start", every=1.0)
    built = _record(worker, "model built as served")
    assert built is not None, worker.tail()
    return built, [r.get("msg", "") for r in worker.log_records()]


@pytest.mark.timeout(2 * READY_S + 600)
def test_a_restarted_worker_compiles_before_it_takes_frames(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    tmp_path: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    config = served_config(MODEL, "cpu")
    assert config.compile and config.warm_sizes  # what this test is about
    first = spawn("segment", "--model", MODEL, "--batch-size", "4", name="segment-first")
    built, _ = _ready(first)
    assert built["served"] == str(config)
    first.kill()  # kill -9: a crash, then a restart

    second = spawn("segment", "--model", MODEL, "--batch-size", "4", name="segment-second")
    built, order = _ready(second)
    assert built["served"] == str(config)
    warm_up_s = float(built["warm_up_s"])
    assert warm_up_s > 0
    # the build and its warm-up come before the loop that joins the group and polls
    assert order.index("model built as served") < order.index("segment worker started")

    # Only now frames flow: paced to real time, so each event's latency is its own.
    video = tmp_path / "camera.mp4"
    synthetic.write_video(video, seed=7, num_frames=40, size=SIZE, fps=FPS)
    spawn("ingest")
    stream_id = f"served-{unique}"
    put_stream(ns_settings, StreamSpec(id=stream_id, url=str(video), model=MODEL, realtime=True))
    client = make_redis(ns_settings)
    try:
        got = wait_events(client, stream_id, 10, 600)
    finally:
        client.close()
    latencies = [e.published_at - e.captured_at for _, e in sorted(got, key=lambda g: g[1].seq)]
    usual = statistics.median(latencies[5:10])  # once any start-up backlog has cleared
    # A first frame that waited for a compilation would take about the warm-up's time.
    assert latencies[0] < warm_up_s, (latencies, warm_up_s)
    assert latencies[0] <= 2 * usual + 1.0, (latencies, usual)
