"""``segstream segment --device cuda``, the overlapped cycle of services/segment/gpu.py, with
Kafka, Redis and a real ingest worker. Needs a CUDA device: skipped, with the reason, without
(the GPU cycle's own tests: tests/gpu/test_gpu_worker.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from segcore.data import synthetic
from services.common.metrics import sample_value
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from tests.integration.workers import Worker, wait_events

pytestmark = [
    pytest.mark.integration,
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA device on this machine (torch.cuda.is_available())",
    ),
]


def test_the_worker_on_cuda_through_kafka_and_redis(
    spawn: Callable[..., Worker],
    ns_settings: Settings,
    unique: str,
    tmp_path: Path,
    compiled_ops: None,
) -> None:
    """``segstream segment --device cuda`` (the overlapped cycle) with a real ingest worker:
    one event per sampled frame, in order, and the consumer committed to the end."""
    synthetic.write_video(tmp_path / "camera.mp4", seed=91, num_frames=45, size=(240, 320))
    segment = spawn("segment", "--model", "yolact_r18_demo", "--device", "cuda")
    spawn("ingest")
    stream_id = f"file-{unique}"
    put_stream(
        ns_settings,
        StreamSpec(id=stream_id, url=str(tmp_path / "camera.mp4"), model="yolact_r18_demo", fps=5),
    )
    client = make_redis(ns_settings)
    try:
        got = wait_events(client, stream_id, 15, 120)
    finally:
        client.close()
    assert [e.seq for _, e in got] == list(range(15))
    assert sum(len(e.instances) for _, e in got) > 0
    done = segment.metrics()
    assert sample_value(done, "segstream_events_published_total", model="yolact_r18_demo") == 15
    assert sample_value(done, "segstream_consumer_lag", model="yolact_r18_demo") == 0
