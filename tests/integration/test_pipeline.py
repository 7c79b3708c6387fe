"""The data path with real servers and real video: ingest and segment worker processes,
Kafka, Redis; sources an H.264 file, an RTSP server and HLS over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcore.data import synthetic
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from tests.integration.workers import Worker, wait_events, wait_state

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
SIZE = (240, 320)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "camera.mp4"
    synthetic.write_video(path, seed=91, num_frames=45, size=SIZE, fps=15)
    return path


def check_events(got: list, size: tuple[int, int], count: int | None = None) -> None:
    """Events decode at the frame's size, one per sampled frame, in order."""
    seqs = [event.seq for _, event in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    if count is not None:
        assert seqs == list(range(count))
    ids = [entry for entry, _ in got]
    for entry, event in got:
        assert entry == f"{int(event.captured_at * 1000)}-{event.seq}"
        assert (event.height, event.width) == size
        for inst in event.instances:
            assert mask_utils.decode(inst.rle()).shape == size
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


def test_h264_file_through_kafka_and_redis(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    video: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    segment = spawn("segment", "--model", MODEL)
    ingest = spawn("ingest")
    stream_id = f"file-{unique}"
    put_stream(ns_settings, StreamSpec(id=stream_id, url=str(video), model=MODEL, fps=5))
    client = make_redis(ns_settings)
    try:
        got = wait_events(client, stream_id, 15, 90)
        health = wait_state(client, stream_id, {"finished"}, 30)
    finally:
        client.close()
    check_events(got, SIZE, count=15)
    # 45 frames at 15 fps sampled at 5 fps: frames 0, 3, 6, ...
    assert [round(e.pts * 15) for _, e in got] == list(range(0, 45, 3))
    assert health["frames"] == "15" and health["reason"] == ""
    truth = list(synthetic.scene(91, 45, SIZE))
    ious = []
    for _, event in got:
        target = truth[round(event.pts * 15)][1]
        for inst in event.instances:
            mask = mask_utils.decode(inst.rle()).astype(bool)
            same = [
                m
                for m, c in zip(target["masks"], target["labels"], strict=True)
                if c == inst.class_id
            ]
            ious.append(max((float((mask & m).sum() / (mask | m).sum()) for m in same), default=0))
    assert ious and float(np.mean(ious)) > 0.7
    assert segment.alive() and ingest.alive()
    records = list(ingest.log_records())
    assert any(r.get("stream_id") == stream_id and r["msg"] == "stream finished" for r in records)
