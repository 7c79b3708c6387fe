"""The GPU worker's frame handling that runs without CUDA (services/segment/gpu_frames.py):
the header check triage uses, the CPU fallback of the batch decode and the staging ring.
The nvJPEG path: tests/gpu/test_gpu_worker.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from services.common.events import DecodeError
from services.common.frames import FrameMessage, encode_frame
from services.segment.gpu_frames import Declared, Staging, decode_frames


def message(seq: int, height: int = 24, width: int = 32) -> FrameMessage:
    rng = np.random.default_rng(seq)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode_frame("cam", seq, seq / 5, 1_000.0 + seq, rgb)


def test_declared_checks_the_header_and_keeps_the_message() -> None:
    declared = Declared()
    good = message(0, 48, 64)
    stand_in = declared(good)
    assert stand_in.shape == (48, 64, 3) and stand_in.dtype == np.uint8
    assert not stand_in.flags.writeable  # a shape, not pixels: nothing may write to it
    assert declared.messages == [good]


def test_declared_refuses_what_image_would_refuse() -> None:
    declared = Declared()
    good = message(1)
    with pytest.raises(DecodeError, match="declares 32x24, headers say 33x24"):
        declared(dataclasses.replace(good, width=33))
    with pytest.raises(DecodeError, match="not a jpeg image"):
        declared(dataclasses.replace(good, data=b"not an image at all"))
    assert declared.messages == []


def test_cpu_decode_equals_the_frame_codec_and_isolates_a_bad_frame() -> None:
    messages = [message(2), message(3, 40, 20), message(4)]
    # the header is intact (Declared passes it), the pixels are gone
    scan = messages[1].data.index(b"\xff\xda")  # start of scan: headers before it
    broken = dataclasses.replace(messages[1], data=messages[1].data[: scan + 20])
    assert Declared()(broken).shape == (40, 20, 3)
    frames = decode_frames([messages[0], broken, messages[2]], "cpu", Staging("cpu"))
    assert isinstance(frames[1], DecodeError) and "frame cam#3" in str(frames[1])
    for m, frame in ((messages[0], frames[0]), (messages[2], frames[2])):
        assert isinstance(frame, torch.Tensor)
        assert frame.dtype == torch.uint8 and frame.shape == (m.height, m.width, 3)
        np.testing.assert_array_equal(frame.numpy(), m.image())


def test_staging_reuses_its_buffers_without_touching_what_it_handed_out() -> None:
    staging = Staging("cpu", slots=2)
    rng = np.random.default_rng(5)
    batches = [
        [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
        for sizes in ([(4, 5), (6, 7)], [(300, 400)], [(2, 3)], [(8, 8), (1, 1), (9, 2)])
    ]
    uploaded = [staging.upload(b) for b in batches]  # the ring wraps twice, one buffer grows
    for arrays, tensors in zip(batches, uploaded, strict=True):
        assert [t.shape for t in tensors] == [a.shape for a in arrays]
        for array, tensor in zip(arrays, tensors, strict=True):
            np.testing.assert_array_equal(tensor.numpy(), array)
    with pytest.raises(ValueError, match="slots must be >= 1"):
        Staging("cpu", slots=0)


def test_staging_copies_read_only_and_flipped_frames() -> None:
    base = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    flipped = base[::-1]
    read_only = base.copy()
    read_only.flags.writeable = False
    out = Staging("cpu").upload([flipped, read_only])
    np.testing.assert_array_equal(out[0].numpy(), flipped)
    np.testing.assert_array_equal(out[1].numpy(), base)
