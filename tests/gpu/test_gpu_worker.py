"""The GPU segment worker (services/segment/gpu.py, gpu_frames.py) on CUDA: nvJPEG batch
decode against the CPU decoder, pinned staging, the overlapped cycle's events against the
plain path's, the float16 and channels-last options within their stated tolerance (the real
worker on CUDA with Kafka and Redis: tests/integration/test_segment_cuda.py).

Tolerances (the ones services/segment/gpu.py states):
- nvJPEG against Pillow's libjpeg: same shape, mean absolute difference <= 1.5 gray levels
  (the decoders' IDCT and chroma upsampling differ by a level here and there);
- the cycle against the plain path on CPU-decoded frames: same instances (class), mask IoU
  >= 0.98, scores within 0.01 (what the decoders' difference moves);
- ``gpu_half`` against float32: every float32 instance scoring at least ``min_score`` + 0.05
  has a float16 twin of its class with mask IoU >= 0.9, score within 0.03 and box within 2
  px (the models' own float16 tolerance, tests/gpu/test_models_cuda.py);
- ``gpu_channels_last`` (float32) against the default layout: mask IoU >= 0.99, scores
  within 1e-3.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import segcore
from segcore.data import synthetic
from services.common.events import DecodeError, Instance, MaskEvent
from services.common.frames import FrameMessage, encode_frame
from services.common.settings import Settings
from services.segment.gpu import GpuCycle
from services.segment.gpu_frames import Staging, decode_frames
from services.segment.infer import Item, class_names, infer, to_events
from services.segment.worker import SegmentOptions
from tests.gpu.test_models_cuda import _build
from tests.unit.services.segment.test_gpu_cycle import WAIT_S, Record, StandIn, run_until

pytestmark = pytest.mark.gpu

MIN_SCORE = 0.2


def messages_of(
    count: int, size: tuple[int, int], frame_size: tuple[int, int]
) -> list[FrameMessage]:
    """JPEG frame messages of synthetic scenes, ``size`` (h, w), events at ``frame_size``."""
    return [
        encode_frame(
            "cam",
            t,
            t / 5,
            time.time(),
            synthetic.frame(11 + t % 3, t, size)[0],
            frame_size=frame_size,
        )
        for t in range(count)
    ]


def test_nvjpeg_batch_matches_the_cpu_decoder() -> None:
    messages = messages_of(5, (240, 320), (320, 240)) + messages_of(3, (540, 960), (960, 540))
    frames = decode_frames(messages, "cuda", Staging("cuda"))
    for message, frame in zip(messages, frames, strict=True):
        assert isinstance(frame, torch.Tensor), frame
        assert frame.is_cuda and frame.dtype == torch.uint8
        assert tuple(frame.shape) == (message.height, message.width, 3)
        diff = (frame.cpu().int() - torch.from_numpy(message.image()).int()).abs().float()
        assert float(diff.mean()) <= 1.5


def test_a_bad_jpeg_fails_alone_in_its_batch() -> None:
    messages = messages_of(4, (120, 160), (160, 120))
    scan = messages[2].data.index(b"\xff\xda")
    messages[2] = dataclasses.replace(messages[2], data=messages[2].data[: scan + 20])
    frames = decode_frames(messages, "cuda", Staging("cuda"))
    assert isinstance(frames[2], DecodeError) and "cam#2" in str(frames[2])
    assert all(isinstance(f, torch.Tensor) and f.is_cuda for i, f in enumerate(frames) if i != 2)


def test_staging_is_pinned_and_keeps_what_it_handed_out() -> None:
    staging = Staging("cuda", slots=2)
    rng = np.random.default_rng(0)
    batches = [
        [rng.integers(0, 256, (h, 64, 3), dtype=np.uint8) for h in (8, 300)] for _ in range(5)
    ]
    uploaded = [staging.upload(b) for b in batches]
    torch.cuda.synchronize()
    assert all(b is not None and b.is_pinned() for b in staging._buffers)
    for arrays, tensors in zip(batches, uploaded, strict=True):
        for array, tensor in zip(arrays, tensors, strict=True):
            assert tensor.is_cuda
            np.testing.assert_array_equal(tensor.cpu().numpy(), array)


def iou(a: Instance, b: Instance) -> float:
    return float(mask_utils.iou([a.rle()], [b.rle()], [False])[0, 0])


def match(
    got: list[MaskEvent],
    want: list[MaskEvent],
    *,
    floor: float,
    min_iou: float,
    score_tol: float,
    box_tol: float | None = None,
) -> None:
    """Every instance of ``want`` scoring at least ``floor`` has a twin in ``got`` (the same
    event, class, mask IoU >= ``min_iou``, score and box within their tolerances)."""
    assert [e.seq for e in got] == [e.seq for e in want]
    checked = 0
    for g, w in zip(got, want, strict=True):
        for inst in w.instances:
            if inst.score < floor:
                continue
            twins = [i for i in g.instances if i.class_id == inst.class_id]
            assert twins, f"event {w.seq}: no {inst.label} in {[i.label for i in g.instances]}"
            best = max(twins, key=lambda i: iou(i, inst))
            assert iou(best, inst) >= min_iou, f"event {w.seq} {inst.label}: IoU {iou(best, inst)}"
            assert best.score == pytest.approx(inst.score, abs=score_tol)
            if box_tol is not None:
                assert best.box == pytest.approx(inst.box, abs=box_tol)
            checked += 1
    assert checked, "no instance to compare"


def cycle_events(
    model: torch.nn.Module, messages: list[FrameMessage], settings: Settings | None = None
) -> list[MaskEvent]:
    """The events the overlapped cycle publishes for ``messages`` (batches of 4)."""
    records = [Record("frames", 0, i, *m.to_record()) for i, m in enumerate(messages)]
    worker = StandIn([records[i : i + 4] for i in range(0, len(records), 4)])
    worker.settings = settings or Settings()
    worker.model, worker.names = model, class_names(model)
    worker.options = SegmentOptions(device="cuda", min_score=MIN_SCORE)
    cycle = GpuCycle(worker)  # type: ignore[arg-type]
    try:
        run_until(cycle, worker, lambda: worker.committed() == {0: len(records)})
    finally:
        cycle.close(WAIT_S)
    return worker.events


def plain_events(model: torch.nn.Module, messages: list[FrameMessage]) -> list[MaskEvent]:
    items = [Item("cam", m.seq, m.pts, m.captured_at, m.image(), m.frame_size) for m in messages]
    names = class_names(model)
    return [
        e
        for k in range(0, len(items), 4)
        for e in to_events(
            items[k : k + 4], infer(model, [i.rgb for i in items[k : k + 4]]), names, "m", MIN_SCORE
        )
    ]


@pytest.fixture(params=["yolact_r18_demo", "maskrcnn_r50_fpn"])
def model(request: pytest.FixtureRequest, compiled_ops: None) -> torch.nn.Module:
    """The demo model (trained: real detections on the synthetic scenes) and a Mask R-CNN
    made confident (tests/gpu/test_models_cuda.py), as the worker builds them."""
    name = request.param
    built = segcore.build(name, fuse=True) if name == "yolact_r18_demo" else _build(name)
    return built.cuda().eval()


def test_the_cycle_gives_the_plain_path_events(model: torch.nn.Module) -> None:
    messages = messages_of(8, (240, 320), (640, 480))
    match(
        cycle_events(model, messages),
        plain_events(model, messages),
        floor=MIN_SCORE + 0.05,
        min_iou=0.98,
        score_tol=0.01,
    )


def test_float16_within_the_stated_tolerance(model: torch.nn.Module) -> None:
    messages = messages_of(8, (240, 320), (640, 480))
    reference = cycle_events(model, messages)
    half = cycle_events(model, messages, Settings(gpu_half=True))
    match(half, reference, floor=MIN_SCORE + 0.05, min_iou=0.9, score_tol=0.03, box_tol=2.0)


def test_channels_last_within_the_stated_tolerance(model: torch.nn.Module) -> None:
    messages = messages_of(8, (240, 320), (640, 480))
    reference = cycle_events(model, messages)
    nhwc = cycle_events(model, messages, Settings(gpu_channels_last=True))
    match(nhwc, reference, floor=MIN_SCORE + 0.05, min_iou=0.99, score_tol=1e-3)
