"""Every CUDA kernel against the library a user would otherwise call, or the op's reference."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import MultiScaleRoIAlign

import cuda_ext
from segcore.ops import (
    assemble_masks,
    assemble_masks_reference,
    fast_nms,
    fast_nms_reference,
    masks_to_rle,
    multiscale_roi_align,
    paste_masks,
    preprocess_frames,
    preprocess_frames_reference,
)

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _cuda_kernels(compiled_ops: None) -> None:
    assert cuda_ext.has_cuda_kernels(), "the library was built without nvcc"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _boxes(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    gen = _gen(seed)
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = (torch.rand(n, 2, generator=gen) * 0.5 * size + 1) / 2
    return torch.cat([centre - half, centre + half], dim=1)


@pytest.mark.parametrize("shape", [(7, 30, 40), (3, 1080, 1920), (2000, 12, 16), (0, 5, 5)])
def test_masks_to_rle_cuda(shape: tuple[int, int, int]) -> None:
    masks = torch.rand(*shape, generator=_gen(sum(shape))) > 0.5
    expected = (
        mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8)))
        if shape[0]
        else []
    )
    got = masks_to_rle(masks.cuda())
    assert [g["counts"] for g in got] == [e["counts"] for e in expected]


def test_masks_to_rle_cuda_non_contiguous_uint8() -> None:
    masks = torch.rand(4, 33, 21, generator=_gen(1)) > 0.4
    strided = masks.cuda().to(torch.uint8).transpose(1, 2).contiguous().transpose(1, 2)
    assert [g["counts"] for g in masks_to_rle(strided)] == [
        g["counts"] for g in masks_to_rle(masks)
    ]


def test_paste_then_encode_cuda() -> None:
    masks = torch.rand(50, 1, 28, 28, generator=_gen(2))
    boxes = _boxes(50, 720, 1280, 3)
    pasted = paste_masks(masks.cuda(), boxes.cuda(), (720, 1280), threshold=0.5)
    assert pasted.dtype == torch.bool
    expected = paste_masks_in_image(masks, boxes, (720, 1280))[:, 0] > 0.5
    assert torch.equal(pasted[:, 0].cpu(), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_multiscale_roi_align_cuda(dtype: torch.dtype) -> None:
    gen = _gen(4)
    features = [torch.randn(2, 32, 512 // s, 640 // s, generator=gen) for s in (4, 8, 16, 32)]
    boxes = [_boxes(300, 512, 640, 5), _boxes(10_000, 480, 600, 6)]
    shapes = [(512, 640), (480, 600)]
    names = [str(i) for i in range(4)]
    expected = MultiScaleRoIAlign(names, 7, 2)(
        OrderedDict(zip(names, features, strict=True)), boxes, shapes
    )
    got = multiscale_roi_align(
        [f.cuda().to(dtype) for f in features], [b.cuda().to(dtype) for b in boxes], shapes, 7, 2
    )
    atol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float().cpu(), expected, atol=atol, rtol=1e-3)


def test_multiscale_roi_align_cuda_backward() -> None:
    gen = _gen(7)
    base = [torch.randn(1, 8, 128 // s, 160 // s, generator=gen) for s in (4, 8)]
    boxes = [_boxes(40, 128, 160, 8)]
    grads = []
    for device in ("cpu", "cuda"):
        features = [f.to(device).requires_grad_() for f in base]
        out = multiscale_roi_align(features, [b.to(device) for b in boxes], [(128, 160)], 7, 2)
        (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum().backward()
        grads.append([f.grad.cpu() for f in features])
    for cpu, gpu in zip(*grads, strict=True):
        torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)


def test_multiscale_roi_align_cuda_gradcheck() -> None:
    features = [
        torch.randn(1, 2, 16, 16, generator=_gen(9), dtype=torch.float64).cuda().requires_grad_()
    ]
    boxes = [torch.tensor([[1.3, 2.1, 40.2, 30.7]], dtype=torch.float64).cuda()]
    assert torch.autograd.gradcheck(
        lambda f: multiscale_roi_align([f], boxes, [(64, 64)], 3, 2), tuple(features)
    )


@pytest.mark.parametrize("n", [1, 2000, 10_000])
def test_fast_nms_cuda(n: int) -> None:
    boxes = _boxes(n, 550, 550, 10)
    scores = torch.rand(20, n, generator=_gen(11))
    expected = fast_nms_reference(boxes, scores, 0.5, 200, 0.05, 100)
    got = fast_nms(boxes.cuda(), scores.cuda(), 0.5, 200, 0.05, 100, return_indices=True)
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g.cpu(), e)


def test_fast_nms_cuda_float16() -> None:
    boxes = _boxes(500, 550, 550, 12).cuda().half()
    scores = torch.rand(10, 500, generator=_gen(13)).cuda().half()
    expected = fast_nms_reference(boxes, scores)
    got = fast_nms(boxes, scores, return_indices=True)
    # Both decide in half precision with the same arithmetic; nvcc may fuse a multiply-add.
    assert len(got[0]) == len(expected[0])
    assert (got[3] == expected[3]).float().mean() > 0.98


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_assemble_masks_cuda(dtype: torch.dtype) -> None:
    gen = _gen(14)
    protos = torch.randn(2, 32, 138, 138, generator=gen)
    coeffs = torch.randn(300, 32, generator=gen)
    boxes = _boxes(300, 138, 138, 15)
    index = torch.randint(0, 2, (300,), generator=gen)
    expected = assemble_masks_reference(protos, coeffs, boxes, index)
    got = assemble_masks(
        protos.cuda().to(dtype), coeffs.cuda().to(dtype), boxes.cuda().to(dtype), index.cuda()
    )
    atol = 1e-5 if dtype == torch.float32 else 1e-2
    # Half-precision boxes move crop edges by a pixel; compare where both crops agree.
    same_crop = (got.cpu() > 0) == (expected > 0)
    assert same_crop.float().mean() > 0.99
    torch.testing.assert_close(
        got.float().cpu()[same_crop], expected[same_crop], atol=atol, rtol=1e-3
    )


def test_assemble_masks_cuda_backward() -> None:
    gen = _gen(16)
    protos = torch.randn(1, 8, 20, 24, generator=gen, dtype=torch.float64)
    coeffs = torch.randn(5, 8, generator=gen, dtype=torch.float64)
    boxes = _boxes(5, 20, 24, 17).double()
    p, c = protos.cuda().requires_grad_(), coeffs.cuda().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: assemble_masks(
            a, b, boxes.cuda()[:, :], torch.zeros(5, dtype=torch.int64, device="cuda")
        ),
        (p, c),
    )


@pytest.mark.parametrize(
    ("shape", "size"), [((2, 1080, 1920), (550, 550)), ((1, 37, 53), (64, 48))]
)
def test_preprocess_frames_cuda(shape: tuple[int, int, int], size: tuple[int, int]) -> None:
    frames = torch.randint(0, 256, (*shape, 3), dtype=torch.uint8, generator=_gen(18))
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    expected = preprocess_frames_reference(frames, size, mean, std)
    got = preprocess_frames(frames.cuda(), size, mean, std)
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=0)
