"""all_levels_roi_align's CUDA kernels against torchvision's roi_align per level on the GPU."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

import cuda_ext
from segcore.ops import all_levels_roi_align

pytestmark = pytest.mark.gpu

STRIDES = (4, 8, 16, 32)


@pytest.fixture(autouse=True)
def _cuda_kernels(compiled_ops: None) -> None:
    assert cuda_ext.has_cuda_kernels(), "the library was built without nvcc"


def _pyramid(batch: int, channels: int, height: int, width: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, channels, height // s, width // s, generator=gen).cuda() for s in STRIDES
    ]


def _boxes(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = (torch.rand(n, 2, generator=gen) * 0.5 * size + 1) / 2
    return torch.cat([centre - half, centre + half], dim=1).cuda()


def _per_level(
    features: list[torch.Tensor],
    boxes: list[torch.Tensor],
    size: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    return torch.stack(
        [
            roi_align(f, boxes, size, 1.0 / s, sampling_ratio, aligned)
            for f, s in zip(features, STRIDES, strict=True)
        ]
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize(("sampling_ratio", "aligned"), [(2, False), (0, True)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_torchvision_per_level(
    dtype: torch.dtype, sampling_ratio: int, aligned: bool, channels_last: bool
) -> None:
    features = [f.to(dtype) for f in _pyramid(2, 32, 512, 640, seed=1)]
    if channels_last:
        features = [f.contiguous(memory_format=torch.channels_last) for f in features]
    boxes = [_boxes(300, 512, 640, 2).to(dtype), _boxes(2000, 512, 640, 3).to(dtype)]
    got = all_levels_roi_align(features, boxes, [(512, 640)] * 2, 14, sampling_ratio, aligned)
    expected = _per_level(
        [f.float() for f in features], [b.float() for b in boxes], 14, sampling_ratio, aligned
    )
    atol = {torch.float16: 2e-2, torch.float32: 1e-5, torch.float64: 1e-5}[dtype]
    torch.testing.assert_close(got.float(), expected, atol=atol, rtol=1e-3)


def test_no_rois() -> None:
    features = _pyramid(1, 8, 128, 128, seed=4)
    got = all_levels_roi_align(features, [torch.zeros(0, 4).cuda()], [(128, 128)], 7, 2)
    assert got.shape == (4, 0, 8, 7, 7) and got.is_cuda


def test_gradients_equal_torchvision() -> None:
    base = _pyramid(2, 8, 128, 160, seed=5)
    boxes = [_boxes(40, 128, 160, 6), _boxes(15, 128, 160, 7)]
    grads = []
    for fn in (
        lambda f: all_levels_roi_align(f, boxes, [(128, 160)] * 2, 7, 2),
        lambda f: _per_level(f, boxes, 7, 2, False),
    ):
        features = [f.clone().requires_grad_() for f in base]
        out = fn(features)
        (out * torch.linspace(-1, 1, out.numel(), device="cuda").view_as(out)).sum().backward()
        grads.append([f.grad for f in features])
    for ours, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(8)
    features = [
        torch.randn(1, 2, 16 // k, 16 // k, generator=gen, dtype=torch.float64)
        .cuda()
        .requires_grad_()
        for k in (1, 2)
    ]
    boxes = [torch.tensor([[1.3, 2.1, 40.2, 30.7], [5.0, 6.5, 20.0, 60.0]]).double().cuda()]
    assert torch.autograd.gradcheck(
        lambda a, b: all_levels_roi_align([a, b], boxes, [(64, 64)], 3, 2), tuple(features)
    )


def test_opcheck() -> None:
    from segcore.ops.multiscale_roi_align import infer_scales, to_rois

    features = _pyramid(2, 4, 128, 128, seed=9)
    boxes = [_boxes(7, 128, 128, 10), _boxes(3, 128, 128, 11)]
    torch.library.opcheck(
        torch.ops.cuda_ext.all_levels_roi_align.default,
        (features, to_rois(boxes), infer_scales(features, [(128, 128)] * 2), 7, 5, 2, False),
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )
