"""assemble_masks on CUDA never makes the host wait for the device (its range check of
batch_index is queued on the stream)."""

from __future__ import annotations

import pytest
import torch

import cuda_ext
from segcore.ops import assemble_masks

pytestmark = pytest.mark.gpu


def test_assemble_masks_does_not_synchronise(compiled_ops: None) -> None:
    assert cuda_ext.has_cuda_kernels(), "the library was built without nvcc"
    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(2, 32, 69, 69, generator=gen).cuda()
    coeffs = torch.randn(5, 32, generator=gen).cuda()
    boxes = torch.tensor([[0.0, 0, 30, 30]] * 5).cuda()
    batch_index = torch.tensor([0, 1, 1, 0, 1]).cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # a synchronising call now raises
    try:
        out = assemble_masks(protos, coeffs, boxes, batch_index)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    expected = assemble_masks(protos.cpu(), coeffs.cpu(), boxes.cpu(), batch_index.cpu())
    torch.testing.assert_close(out.cpu(), expected, atol=1e-5, rtol=1e-4)
