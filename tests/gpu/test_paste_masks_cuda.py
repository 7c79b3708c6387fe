"""paste_masks on CUDA: the CUDA kernel against torchvision and the CPU kernel."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

import cuda_ext
from segcore.ops import expand_boxes, paste_masks

pytestmark = pytest.mark.gpu


def _case(n: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, 1, 28, 28, generator=gen)
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = (torch.rand(n, 2, generator=gen) * 0.8 * size + 0.5) / 2
    return masks, torch.cat([centre - half, centre + half], dim=1)


@pytest.fixture(autouse=True)
def _cuda_kernels(compiled_ops: None) -> None:
    assert cuda_ext.has_cuda_kernels(), "the library was built without nvcc"


@pytest.mark.parametrize(("height", "width"), [(50, 60), (480, 640), (1080, 1920), (37, 23)])
def test_cuda_equals_torchvision(height: int, width: int) -> None:
    masks, boxes = _case(32, height, width)
    expected = paste_masks_in_image(masks, boxes, (height, width))
    got = paste_masks(masks.cuda(), boxes.cuda(), (height, width))
    assert got.is_cuda
    torch.testing.assert_close(got.cpu(), expected, atol=1e-5, rtol=0)


def test_cuda_equals_cpu_kernel_many_boxes() -> None:
    masks, boxes = _case(10_000, 64, 96, seed=1)
    cpu = paste_masks(masks, boxes, (64, 96))
    gpu = paste_masks(masks.cuda(), boxes.cuda(), (64, 96))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


def test_cuda_float16_within_half_precision() -> None:
    masks, boxes = _case(16, 120, 160, seed=2)
    expected = paste_masks_in_image(masks, boxes, (120, 160))
    got = paste_masks(masks.cuda().half(), boxes.cuda(), (120, 160))
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float().cpu(), expected, atol=2e-3, rtol=0)


def test_cuda_no_boxes_and_non_contiguous() -> None:
    empty = paste_masks(torch.zeros(0, 1, 28, 28).cuda(), torch.zeros(0, 4).cuda(), (10, 12))
    assert empty.shape == (0, 1, 10, 12)
    masks, boxes = _case(8, 40, 50, seed=3)
    strided = torch.zeros(8, 1, 28, 56, device="cuda")
    strided[..., ::2] = masks.cuda()
    got = paste_masks(strided[..., ::2], boxes.cuda().t().contiguous().t(), (40, 50))
    torch.testing.assert_close(
        got.cpu(), paste_masks_in_image(masks, boxes, (40, 50)), atol=1e-5, rtol=0
    )


def test_cuda_kernel_registered_and_traceable() -> None:
    masks, boxes = _case(4, 30, 40)
    int_boxes = expand_boxes(boxes, 28, 1).cuda()
    torch.library.opcheck(
        torch.ops.cuda_ext.paste_masks.default,
        (masks.cuda(), int_boxes, 30, 40, 1),
        test_utils=("test_schema", "test_faketensor"),
    )
