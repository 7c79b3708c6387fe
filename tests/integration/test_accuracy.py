"""End-to-end accuracy: a synthetic scene encoded as H.264 and pushed through ingest ->
Kafka -> segment -> Redis scores the same COCO mask AP (within 0.03) as the demo model on
the scene's raw frames; `segstream run` on the same file does as well."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

import segcore
from segcore.data import synthetic
from segcore.evaluation import Detection, evaluate, evaluate_detections
from services.common.events import MaskEvent, decode_event
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from services.pipeline.run import RunOptions, run
from tests.integration.workers import Worker, wait_events

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
SIZE = (240, 320)
SEED, FRAMES, FPS = 4242, 60, 15  # a scene the model was not trained on
NAMES = list(synthetic.CLASSES)


def ap_of(events: list[MaskEvent], samples: list) -> float:
    """Mask AP of ``events`` against the scene's ground truth; an instance's class is its
    ``label`` (the name, which the scene's classes list)."""
    targets = [(SIZE, samples[round(e.pts * FPS)][1]) for e in events]
    detections = [
        [Detection(NAMES.index(i.label), i.score, i.rle(), i.box) for i in e.instances]
        for e in events
    ]
    return evaluate_detections(targets, detections, NAMES).mask_ap


def through_the_service(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    video: Path,
    stream_id: str,
    model: str,
    frames: int,
    timeout_s: float,
) -> list[MaskEvent]:
    """The events of ``video`` registered as stream ``stream_id`` of ``model``, from a segment
    worker and an ingest worker started here: one per frame, in order."""
    spawn("segment", "--model", model)
    spawn("ingest")
    put_stream(ns_settings, StreamSpec(id=stream_id, url=str(video), model=model, fps=FPS))
    client = make_redis(ns_settings)
    try:
        got = [e for _, e in wait_events(client, stream_id, frames, timeout_s)]
    finally:
        client.close()
    assert [round(e.pts * FPS) for e in got] == list(range(frames))
    return got


def test_pipeline_and_run_keep_the_models_accuracy(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    tmp_path: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    samples = list(synthetic.scene(SEED, FRAMES, SIZE))
    model = segcore.build_served(MODEL)  # the build the segment worker runs
    raw_ap = evaluate(model, samples, NAMES).mask_ap
    assert raw_ap > 0.5
    video = tmp_path / "scene.mp4"
    synthetic.write_video(video, SEED, FRAMES, SIZE, fps=FPS)

    got = through_the_service(ns_settings, spawn, video, f"acc-{unique}", MODEL, FRAMES, 120)
    pipeline_ap = ap_of(got, samples)

    out = io.StringIO()
    run(RunOptions(source=str(video), model=MODEL), out, model=model)
    local = [decode_event(line) for line in out.getvalue().splitlines()]
    assert len(local) == FRAMES
    run_ap = ap_of(local, samples)

    print(f"mask AP raw {raw_ap:.3f} pipeline {pipeline_ap:.3f} run {run_ap:.3f}")
    assert abs(pipeline_ap - raw_ap) <= 0.03
    assert abs(run_ap - raw_ap) <= 0.03
