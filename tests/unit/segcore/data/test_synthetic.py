"""The synthetic camera: deterministic, masks that match the rendered pixels, occlusion."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from pycocotools.coco import COCO

from segcore.data import synthetic
from segcore.data.synthetic import _PALETTE, CLASSES


def test_same_seed_same_scene() -> None:
    a = list(synthetic.scene(7, 5, (96, 128)))
    b = list(synthetic.scene(7, 5, (96, 128)))
    for (fa, ta), (fb, tb) in zip(a, b, strict=True):
        assert np.array_equal(fa, fb)
        assert np.array_equal(ta["labels"], tb["labels"])
        assert np.array_equal(ta["masks"], tb["masks"])
    other, _ = next(synthetic.scene(8, 1, (96, 128)))
    assert not np.array_equal(a[0][0], other)


def test_frame_equals_the_scenes_frame() -> None:
    frames = list(synthetic.scene(3, 12, (80, 100)))
    frame, target = synthetic.frame(3, 11, (80, 100))
    assert np.array_equal(frame, frames[11][0])
    assert np.array_equal(target["masks"], frames[11][1]["masks"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_every_mask_pixel_shows_its_object(seed: int) -> None:
    for t, (frame, target) in enumerate(synthetic.scene(seed, 40, (120, 160))):
        if t % 13:
            continue
        assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
        assert target["masks"].dtype == bool
        assert target["labels"].dtype == np.int64
        for label, mask in zip(target["labels"], target["masks"], strict=True):
            assert mask.any(), "a hidden object is left out"
            tones = np.array(_PALETTE[CLASSES[label]])
            pixels = frame[mask]
            is_tone = (pixels[:, None, :] == tones[None]).all(axis=2).any(axis=1)
            assert is_tone.all(), f"{CLASSES[label]} mask covers pixels of something else"


def test_occluded_parts_are_not_in_the_mask() -> None:
    overlapped = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        synthetic._background(rng, 120, 160)  # drawn first, as frame() does
        objects = synthetic._objects(rng, 120, 160)
        frame, target = synthetic.frame(seed, 0, (120, 160))
        masks = target["masks"]
        # Visible masks never overlap.
        assert (masks.sum(axis=0) <= 1).all()
        # The union of visible masks equals the union of the full shapes: what the front
        # objects hide is nobody's but theirs.
        full = [synthetic.render([o], np.zeros_like(frame), 0)[1]["masks"] for o in objects]
        shapes = np.concatenate([m for m in full if len(m)])
        assert np.array_equal(shapes.any(axis=0), masks.any(axis=0))
        overlapped += int(shapes.sum() > masks.sum())
    assert overlapped > 3, "scenes should have objects occluding each other"


def test_objects_move_and_all_classes_appear() -> None:
    seen: set[int] = set()
    moved = 0
    for seed in range(10):
        frames = list(synthetic.scene(seed, 10, (120, 160)))
        seen |= set(frames[0][1]["labels"].tolist())
        moved += not np.array_equal(frames[0][1]["masks"].any(0), frames[9][1]["masks"].any(0))
    assert seen == set(range(len(CLASSES))) and len(CLASSES) >= 5
    assert moved == 10


def test_video_and_coco_annotations(tmp_path: Path) -> None:
    annotations = synthetic.write_video(
        tmp_path / "camera.mp4", seed=5, num_frames=12, size=(96, 128)
    )
    with av.open(str(tmp_path / "camera.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 12 and decoded[0].shape == (96, 128, 3)
    truth = list(synthetic.scene(5, 12, (96, 128)))
    # Lossy but close: the encoded frame looks like the rendered one.
    assert np.abs(decoded[3].astype(int) - truth[3][0].astype(int)).mean() < 6
    coco = COCO(str(annotations))
    for image_id in (1, 7):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        masks = truth[image_id - 1][1]["masks"]
        assert len(anns) == len(masks)
        for ann, mask in zip(anns, masks, strict=True):
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)


def test_live_camera_paces_frames() -> None:
    import time

    camera = synthetic.live(seed=2, fps=50.0, size=(48, 64))
    start = time.monotonic()
    stamps = [next(camera)[0] for _ in range(6)]
    assert time.monotonic() - start >= 5 / 50.0 * 0.9
    assert stamps == sorted(stamps)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        list(synthetic.scene(1, -1))
    with pytest.raises(ValueError, match="at least 16x16"):
        list(synthetic.scene(1, 1, (8, 8)))
