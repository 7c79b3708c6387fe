"""preprocess_frames: the fused kernel against F.interpolate followed by the normalisation."""

from __future__ import annotations

import pytest
import torch

from segcore.ops import preprocess_frames, preprocess_frames_reference
from segcore.ops.preprocess_frames import IMAGENET_MEAN, IMAGENET_STD


def expected(frames: torch.Tensor, size: tuple[int, int], mean=IMAGENET_MEAN, std=IMAGENET_STD):
    resized = torch.nn.functional.interpolate(
        frames.permute(0, 3, 1, 2).float(), size=size, mode="bilinear", align_corners=False
    )
    return (resized - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((2, 1080, 1920), (550, 550)),
        ((1, 37, 53), (64, 48)),
        ((3, 10, 10), (10, 10)),
        ((1, 1, 1), (5, 7)),
        ((2, 480, 640), (800, 1067)),
    ],
)
def test_equals_interpolate_then_normalise(compiled_ops: None, shape, size) -> None:
    frames = torch.randint(
        0, 256, (*shape, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    want = expected(frames, size)
    for impl in (
        preprocess_frames,
        lambda f, s: preprocess_frames_reference(f, s, IMAGENET_MEAN, IMAGENET_STD),
    ):
        got = impl(frames, size)
        assert got.shape == (shape[0], 3, *size) and got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_custom_mean_std_and_channel_order(compiled_ops: None) -> None:
    frames = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 10, 20, 30
    got = preprocess_frames(frames, (2, 2), mean=(10, 0, 0), std=(1, 2, 3))
    assert torch.equal(got[0, :, 0, 0], torch.tensor([0.0, 10.0, 10.0]))


def test_non_contiguous_frames(compiled_ops: None) -> None:
    planar = torch.randint(0, 256, (2, 3, 30, 40), dtype=torch.uint8)
    frames = planar.permute(0, 2, 3, 1)
    assert not frames.is_contiguous()
    torch.testing.assert_close(
        preprocess_frames(frames, (17, 23)), expected(frames, (17, 23)), atol=1e-4, rtol=0
    )


def test_empty_batch(compiled_ops: None) -> None:
    assert preprocess_frames(torch.zeros(0, 8, 8, 3, dtype=torch.uint8), (4, 4)).shape == (
        0,
        3,
        4,
        4,
    )


@pytest.mark.parametrize(
    ("frames", "size", "message"),
    [
        (torch.zeros(1, 8, 8, 3), (4, 4), "frames must be of dtype uint8"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), (4, 4), "frames must be"),
        (torch.zeros(1, 8, 8, 3, dtype=torch.uint8), (0, 4), "size must be positive"),
        (torch.zeros(1, 8, 8, 3, dtype=torch.uint8), (4,), "size must be"),
    ],
)
def test_rejects_bad_input(frames, size, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preprocess_frames(frames, size)
