"""The serving path (services.segment.infer): uint8 frames through ``preprocess_frames``, the
compact mask format, ``paste_masks(threshold=)`` and ``masks_to_rle``, with the event masks
of the full-plane path it replaced (mask IoU >= 0.99 per instance), for YOLACT and Mask
R-CNN, at the model's frame size and at a larger source frame size.

The reference below is the replaced path, inline: the model's ``forward`` on float images
(masks pasted or resized to the model's input frame as full float planes), then every mask
resized to the source frame with ``F.interpolate`` and thresholded at 0.5.
"""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

import segcore
from segcore.data import synthetic
from segcore.images import to_float_chw
from segcore.models.frames import infer_frames
from segcore.models.maskrcnn import FusedTransform
from segcore.models.weights import WeightsError
from segcore.ops import paste_masks
from services.common.metrics import PipelineMetrics
from services.pipeline import run as run_module
from services.segment import infer as infer_module
from services.segment import worker as worker_module
from services.segment.infer import Item, infer, instances_of, paste_compact, to_events, windows
from services.segment.triage import Ready

SIZE = (240, 320)  # (H, W) of the frames the model gets
LARGER = (1920, 1080)  # (width, height) of a source frame shrunk to SIZE before travel


def reference_masks(
    full: dict[str, Tensor], frame_size: tuple[int, int], min_score: float
) -> Tensor:
    """The replaced path: full float planes resized to the source frame, then > 0.5."""
    keep = full["scores"] >= min_score
    masks = full["masks"][keep]
    width, height = frame_size
    if masks.shape[-2:] != (height, width) and len(masks):
        masks = F.interpolate(masks, size=(height, width), mode="bilinear")
    return masks[:, 0] > 0.5


def ious(a: Tensor, b: Tensor) -> Tensor:
    assert a.shape == b.shape, (a.shape, b.shape)
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return inter / union.clamp(min=1)


@pytest.fixture(scope="module")
def demo() -> Any:
    return segcore.build("yolact_r18_demo", fuse=True)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [rgb for rgb, _ in synthetic.scene(4242, 4, SIZE)]


@pytest.mark.parametrize("frame_size", [(SIZE[1], SIZE[0]), LARGER])
def test_yolact_event_masks_match_the_full_plane_path(
    demo: Any, frames: list[np.ndarray], frame_size: tuple[int, int], compiled_ops: None
) -> None:
    with torch.inference_mode():
        fulls = demo([to_float_chw(rgb) for rgb in frames])
    compacts = infer(demo, frames)
    counted = 0
    for _rgb, full, compact in zip(frames, fulls, compacts, strict=True):
        assert compact["masks"].shape[-2:] == (64, 64)  # prototype resolution, not the frame's
        torch.testing.assert_close(compact["boxes"], full["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(compact["scores"], full["scores"], atol=1e-4, rtol=1e-4)
        assert torch.equal(compact["labels"], full["labels"])
        expected = reference_masks(full, frame_size, 0.3)
        keep = compact["scores"] >= 0.3
        got = paste_compact({k: v[keep] for k, v in compact.items()}, SIZE, frame_size)
        assert ious(expected, got).min() >= 0.99
        # The events carry exactly the pasted masks, RLE-encoded at the source frame size.
        events = instances_of(compact, demo.class_names, 0.3, SIZE, frame_size)
        decoded = [mask_utils.decode(i.rle()).astype(bool) for i in events]
        assert np.array_equal(np.stack(decoded), got.numpy())
        counted += len(events)
    assert counted >= 8


@pytest.fixture(scope="module")
def maskrcnn() -> Any:
    """Mask R-CNN, random weights at a small input size, its mask logits scaled so that the
    masks are confident (0/1 but for their edges, as trained masks are): a random head's
    probabilities all sit near 0.5, where any rounding flips a pixel."""
    torch.manual_seed(0)
    model: Any = segcore.build(
        "maskrcnn_r50_fpn",
        min_size=160,
        max_size=256,
        box_score_thresh=0.0,
        box_detections_per_img=40,
    )
    logits = model.roi_heads.mask_predictor.mask_fcn_logits
    with torch.no_grad():
        logits.weight.mul_(200.0)
    return model


def test_maskrcnn_frames_take_torchvisions_geometry(maskrcnn: Any) -> None:
    """The batch ``preprocess_frames`` makes of uint8 frames is the one torchvision's
    transform makes of them as float images: sizes, padding and values."""
    rng = np.random.default_rng(0)
    rgbs = [rng.integers(0, 256, (181, 250, 3), dtype=np.uint8), frames_of(rng, (480, 640))]
    transform = maskrcnn.transform
    with torch.inference_mode():
        reference, _ = transform([to_float_chw(rgb) for rgb in rgbs])
        got, originals = transform.batch_frames([torch.from_numpy(rgb) for rgb in rgbs])
    assert originals == [rgb.shape[:2] for rgb in rgbs]
    assert got.image_sizes == reference.image_sizes == [(160, 220), (160, 213)]
    torch.testing.assert_close(got.tensors, reference.tensors, atol=1e-4, rtol=1e-4)
    (same,) = [transform.batch_frames(torch.from_numpy(np.stack([rgbs[1]] * 2)))]
    torch.testing.assert_close(same[0].tensors[0], reference.tensors[1], atol=1e-4, rtol=1e-4)


def frames_of(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A frame with structure (smooth blobs), so that the detector's outputs are not noise."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.zeros((height, width, 3), dtype=np.float64)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(15, 60)
        out += rng.uniform(0, 255, 3) * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def test_maskrcnn_event_masks_match_the_full_plane_path(maskrcnn: Any, compiled_ops: None) -> None:
    """Through the whole model at the frame's own size: the same masks, pixel for pixel."""
    rgb = frames_of(np.random.default_rng(1), SIZE)
    with torch.inference_mode():
        (full,) = maskrcnn([to_float_chw(rgb)])
    (compact,) = infer(maskrcnn, [rgb])
    assert compact["masks"].shape[-2:] == (30, 30)  # 28x28 and torchvision's zero border
    torch.testing.assert_close(compact["boxes"], full["boxes"], atol=1e-2, rtol=1e-3)
    expected = reference_masks(full, (SIZE[1], SIZE[0]), 0.0)
    assert int(expected.any(2).any(1).sum()) >= 10
    assert torch.equal(paste_compact(compact, SIZE, (SIZE[1], SIZE[0])), expected)


@pytest.mark.parametrize("frame_size", [(960, 540), LARGER, (1000, 700)])
def test_maskrcnn_masks_at_a_larger_source_frame(
    frame_size: tuple[int, int], compiled_ops: None
) -> None:
    """Mask R-CNN's postprocessing (``FusedTransform.postprocess``) of head masks with the
    shapes trained heads give (smooth blobs; a random head's are noise) in boxes of a
    480x270 frame, full planes resized to the source frame against compact masks pasted
    there."""
    gen = torch.Generator().manual_seed(0)
    n, height, width = 15, 270, 480
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
    radius = 0.4 + 0.4 * torch.rand(n, 1, 1, generator=gen)
    masks = torch.sigmoid(8 * (radius - (xs**2 + ys**2).sqrt()))[:, None]
    centre = torch.rand(n, 2, generator=gen) * torch.tensor([width, height])
    half = (torch.rand(n, 2, generator=gen) * 0.3 + 0.05) * torch.tensor([width, height])
    detections = {
        "boxes": torch.cat([centre - half, centre + half], 1),
        "scores": torch.linspace(1.0, 0.5, n),
        "labels": torch.ones(n, dtype=torch.int64),
        "masks": masks,
    }
    transform = FusedTransform(160, 256, [0.5] * 3, [0.2] * 3)
    transform.eval()
    sizes, original = [(height, width)], [(height, width)]
    (full,) = transform.postprocess([dict(detections)], sizes, original, mask_format="full")
    (compact,) = transform.postprocess([dict(detections)], sizes, original, "compact")
    expected = reference_masks(full, frame_size, 0.0)
    got = paste_compact(compact, (height, width), frame_size)
    assert ious(expected, got).min() >= 0.99


def test_every_registered_model_takes_frames() -> None:
    """Every architecture has the serving entry: its own ``infer_frames`` or, for the
    torchvision detection models finished with ``FusedTransform``, the Mask R-CNN one."""
    for name in segcore.list_models():
        try:
            model = segcore.build(name)
        except WeightsError:  # a demo model whose weights are not trained yet
            model = segcore.build(name, pretrained=False)
        own = callable(getattr(model, "infer_frames", None))
        assert own or isinstance(getattr(model, "transform", None), FusedTransform), name


def test_bad_frames_and_formats_are_named(demo: Any) -> None:
    with pytest.raises(ValueError, match="uint8"):
        infer_frames(demo, torch.zeros(1, 8, 8, 3))
    with pytest.raises(ValueError, match="mask_format"):
        infer_frames(demo, torch.zeros(1, 8, 8, 3, dtype=torch.uint8), mask_format="planes")
    with pytest.raises(ValueError, match="frames must be"):
        infer(demo, [np.zeros((8, 8), dtype=np.uint8)])
    with pytest.raises(TypeError, match="takes no uint8 frames"):
        infer_frames(torch.nn.Linear(2, 2), torch.zeros(1, 8, 8, 3, dtype=torch.uint8))


class Trace(TorchDispatchMode):
    """Every operator call the dispatcher sees: (name, args, output)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...], Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.calls.append((func.name(), args, out))
        return out

    def named(self, part: str) -> list[tuple[str, tuple[Any, ...], Any]]:
        return [call for call in self.calls if part in call[0]]


def assert_serving_path(trace: Trace, source: tuple[int, int], frame_hw: tuple[int, int]) -> None:
    """The ops of the serving path ran, and no full-size float plane was interpolated."""
    assert trace.named("cuda_ext::preprocess_frames"), "frames did not go through preprocess_frames"
    pastes = trace.named("cuda_ext::paste_masks")
    assert pastes and all(args[5] is not None for _, args, _ in pastes), "paste without threshold"
    width, height = source
    encoded = trace.named("cuda_ext::rle_transitions")
    assert encoded and all(tuple(args[0].shape[1:]) == (height, width) for _, args, _ in encoded)
    for name, _, out in trace.named("upsample"):
        planes = {frame_hw, (height, width), (256, 256)}  # frame, source, the model's input
        assert tuple(out.shape[-2:]) not in planes, f"{name} to {tuple(out.shape)}"


def test_segment_worker_runs_the_serving_path(
    demo: Any, frames: list[np.ndarray], compiled_ops: None
) -> None:
    """The segment worker's own batch step (``SegmentWorker._segment``), its publishing
    answered in place of Redis, goes through the serving path's ops."""
    assert worker_module.infer is infer_module.infer
    assert worker_module.to_events is infer_module.to_events
    now = time.time()
    ready = [
        Ready(cast(Any, None), Item("cam", seq, seq / 15, now, rgb, frame_size=LARGER), b"")
        for seq, rgb in enumerate(frames[:2])
    ]
    published: list[list[Any]] = []

    def deliver(ready: Any, events: list[Any]) -> int:
        published.append(events)
        return len(events)

    # The worker's batch step without its Kafka consumer and Redis publisher.
    worker = worker_module.SegmentWorker.__new__(worker_module.SegmentWorker)
    worker.model, worker.names, worker.m = demo, demo.class_names, "yolact_r18_demo"
    worker.options = worker_module.SegmentOptions()
    worker.metrics = PipelineMetrics()
    worker.deliver = deliver  # type: ignore[method-assign]
    trace = Trace()
    with trace:
        count = worker._segment(ready, time.monotonic())
    assert count == 2 and len(published[0]) == 2
    assert_serving_path(trace, LARGER, SIZE)


def test_segstream_run_runs_the_serving_path(demo: Any, tmp_path: Any, compiled_ops: None) -> None:
    assert run_module.infer is infer_module.infer
    assert run_module.to_events is infer_module.to_events
    video = tmp_path / "camera.mp4"
    synthetic.write_video(video, seed=5, num_frames=4, size=SIZE, fps=15)
    out = __import__("io").StringIO()
    trace = Trace()
    with trace:
        stats = run_module.run(
            run_module.RunOptions(source=str(video), model="yolact_r18_demo"), out, model=demo
        )
    assert stats.published == 4
    assert_serving_path(trace, (SIZE[1], SIZE[0]), SIZE)


def test_events_of_frames_of_different_sizes(demo: Any, compiled_ops: None) -> None:
    small = next(rgb for rgb, _ in synthetic.scene(7, 1, (200, 300)))
    big = next(rgb for rgb, _ in synthetic.scene(7, 1, SIZE))
    items = [Item("a", 0, 0.0, 0.0, small), Item("b", 0, 0.0, 0.0, big, frame_size=LARGER)]
    events = to_events(items, infer(demo, [small, big]), demo.class_names, "m", 0.3)
    assert [(e.width, e.height) for e in events] == [(300, 200), LARGER]
    for event in events:
        for inst in event.instances:
            assert inst.mask_size == (event.height, event.width)


@pytest.mark.parametrize("frame", [(320, 240), (455, 256), (1920, 1080), (1000, 700)])
def test_windows_paste_the_whole_masks_pixels(frame: tuple[int, int], compiled_ops: None) -> None:
    """Masks spanning the frame (YOLACT's) pasted as windows of their foreground give the
    pixels of the whole masks pasted over the frame, exactly."""
    gen = torch.Generator().manual_seed(3)
    n, m = 12, 64
    ys, xs = torch.meshgrid(torch.arange(m).float(), torch.arange(m).float(), indexing="ij")
    centre = torch.rand(n, 2, generator=gen) * m
    radius = 2 + torch.rand(n, 1, 1, generator=gen) * 12
    dist = ((xs - centre[:, 0, None, None]) ** 2 + (ys - centre[:, 1, None, None]) ** 2).sqrt()
    masks = torch.sigmoid(2 * (radius - dist))
    masks = masks * (dist < radius + 3)  # YOLACT's crop: zero outside the box
    width, height = frame
    edges = torch.tensor([[0.0, 0.0, width, height]]).expand(n, 4)
    whole = paste_masks(
        masks[:, None],
        edges - torch.tensor([0.0, 0.0, 1.0, 1.0]),
        (height, width),
        padding=0,
        threshold=0.5,
    )[:, 0]
    groups = windows(masks[:, None], edges, 0.5)
    assert sum(len(index) for index, _, _ in groups) == n
    if frame != (455, 256):  # 455 px over 64 cells: no cell edge but the plane's on a pixel
        assert all(group.shape[-1] < m for _, group, _ in groups)
    got = paste_compact({"masks": masks[:, None], "mask_boxes": edges}, (height, width), frame)
    assert torch.equal(got, whole)


@pytest.mark.parametrize("background", [True, False])
def test_class_ids_count_from_zero_without_the_background(background: bool) -> None:
    """Events count classes from 0 (segcore.labels): a model whose label 0 is the background
    (Mask R-CNN's) has its labels shifted down by one; one without (YOLACT's) keeps them."""
    names = ["__background__", "car", "person"] if background else ["car", "person"]
    person = names.index("person")
    output = {
        "boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([person]),
        "masks": torch.ones(1, 1, 8, 8),
        "mask_boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]),
    }
    (instance,) = instances_of(output, names, 0.5, (32, 32))
    assert instance.label == "person"
    assert instance.class_id == 1
