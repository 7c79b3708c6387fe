"""The serving path on CUDA (services.segment.infer): uint8 frames resized on the device,
compact masks pasted and run boundaries found there (only those reach the host), and the
same event masks as on the CPU (mask IoU >= 0.99 per instance), at the frame's size and at
a larger source frame size."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch.utils._python_dispatch import TorchDispatchMode

import segcore
from segcore.data import synthetic
from services.segment.infer import Item, class_names, infer, to_events

pytestmark = pytest.mark.gpu

SIZE = (240, 320)


class Devices(TorchDispatchMode):
    """The device of the first tensor argument of every compiled op call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, set[str]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.name()
        if name.startswith("cuda_ext::") and args and isinstance(args[0], torch.Tensor):
            self.seen.setdefault(name, set()).add(args[0].device.type)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("frame_size", [(SIZE[1], SIZE[0]), (1920, 1080)])
def test_events_on_cuda_match_the_cpu(frame_size: tuple[int, int], compiled_ops: None) -> None:
    frames = [rgb for rgb, _ in synthetic.scene(4242, 4, SIZE)]
    items = [Item("cam", i, 0.0, 0.0, rgb, frame_size=frame_size) for i, rgb in enumerate(frames)]
    cpu: Any = segcore.build("yolact_r18_demo", fuse=True)
    gpu: Any = segcore.build("yolact_r18_demo", fuse=True, device="cuda")
    names = class_names(cpu)
    expected = to_events(items, infer(cpu, frames), names, "m", 0.3)
    trace = Devices()
    with trace:
        got = to_events(items, infer(gpu, frames), names, "m", 0.3)
    for op in ("cuda_ext::preprocess_frames", "cuda_ext::paste_masks", "cuda_ext::rle_transitions"):
        assert trace.seen.get(op) == {"cuda"}, op
    counted = 0
    for want, have in zip(expected, got, strict=True):
        assert [i.class_id for i in have.instances] == [i.class_id for i in want.instances]
        for a, b in zip(want.instances, have.instances, strict=True):
            ma = mask_utils.decode(a.rle()).astype(bool)
            mb = mask_utils.decode(b.rle()).astype(bool)
            assert np.logical_and(ma, mb).sum() / max(1, np.logical_or(ma, mb).sum()) >= 0.99
            counted += 1
    assert counted >= 8
