"""A stream registered with ``panet_r18_demo`` is segmented by a PANet segment worker: a
synthetic scene encoded as H.264 goes through ingest -> Kafka -> segment -> Redis, and the
masks in Redis score against the scene's ground truth as the model does on the raw frames."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import segcore
from segcore.data import synthetic
from segcore.evaluation import evaluate
from services.common.settings import Settings
from tests.integration.test_accuracy import FPS, NAMES, SIZE, ap_of, through_the_service
from tests.integration.workers import Worker

pytestmark = pytest.mark.integration

MODEL = "panet_r18_demo"
SEED, FRAMES = 5151, 30  # a scene the model was not trained on


def test_a_panet_stream_gets_masks_that_match_the_scene(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    tmp_path: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    samples = list(synthetic.scene(SEED, FRAMES, SIZE))
    raw_ap = evaluate(segcore.build(MODEL, fuse=True), samples, NAMES).mask_ap
    assert raw_ap > 0.5
    video = tmp_path / "scene.mp4"
    synthetic.write_video(video, SEED, FRAMES, SIZE, fps=FPS)

    got = through_the_service(ns_settings, spawn, video, f"panet-{unique}", MODEL, FRAMES, 180)
    assert {e.model for e in got} == {MODEL}
    assert all(e.instances for e in got)
    pipeline_ap = ap_of(got, samples)
    print(f"{MODEL} mask AP raw {raw_ap:.3f} pipeline {pipeline_ap:.3f}")
    assert abs(pipeline_ap - raw_ap) <= 0.03
