"""cuda_ext.supports: the one decision between an op's compiled kernel and its reference."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import cuda_ext
from segcore.ops import (
    all_levels_roi_align,
    assemble_masks,
    fast_nms,
    masks_to_rle,
    multiscale_roi_align,
    paste_masks,
    preprocess_frames,
)


def test_cpu_tensor_with_the_library(compiled_ops: None) -> None:
    assert cuda_ext.supports(torch.zeros(2))
    assert cuda_ext.supports(torch.zeros(0, 3, dtype=torch.uint8))


def test_meta_tensor_has_no_compiled_kernel(compiled_ops: None) -> None:
    assert not cuda_ext.supports(torch.zeros(2, device="meta"))


def test_cuda_tensor_follows_the_build(compiled_ops: None) -> None:
    # A fake CUDA tensor has the device without needing a GPU on this machine.
    with FakeTensorMode():
        tensor = torch.zeros(2, device="cuda")
    assert tensor.device.type == "cuda"
    assert cuda_ext.supports(tensor) == cuda_ext.has_cuda_kernels()
    # The test command builds with nvcc, so the answer is yes.
    assert cuda_ext.supports(tensor)


def test_library_turned_off(compiled_ops: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_OPS_LIBRARY", "off")
    assert not cuda_ext.available()
    assert not cuda_ext.supports(torch.zeros(2))


CALLS: dict[str, Callable[[], object]] = {
    "all_levels_roi_align": lambda: all_levels_roi_align(
        [torch.rand(1, 2, 8, 8), torch.rand(1, 2, 4, 4)],
        [torch.tensor([[0.0, 0, 10, 10]])],
        [(32, 32)],
        2,
        2,
    ),
    "assemble_masks": lambda: assemble_masks(
        torch.rand(4, 6, 6), torch.rand(2, 4), torch.tensor([[0.0, 0, 3, 3], [1, 1, 6, 5]])
    ),
    "fast_nms": lambda: fast_nms(torch.tensor([[0.0, 0, 4, 4], [1, 1, 5, 5]]), torch.rand(3, 2)),
    "masks_to_rle": lambda: masks_to_rle(torch.rand(2, 5, 4) > 0.5),
    "multiscale_roi_align": lambda: multiscale_roi_align(
        [torch.rand(1, 2, 8, 8)], [torch.tensor([[0.0, 0, 10, 10]])], [(32, 32)], 2, 2
    ),
    "paste_masks": lambda: paste_masks(
        torch.rand(2, 1, 7, 7), torch.tensor([[0.0, 0, 4, 4], [2, 2, 9, 8]]), (10, 12)
    ),
    "preprocess_frames": lambda: preprocess_frames(
        torch.randint(0, 256, (1, 9, 7, 3), dtype=torch.uint8), (4, 5)
    ),
}


@pytest.mark.parametrize("op", sorted(CALLS))
def test_every_front_asks_supports(
    compiled_ops: None, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    """Each front routes by cuda_ext.supports alone: answering no sends it to the reference,
    whose result is the compiled kernel's."""
    asked: list[torch.device] = []

    def refuse(tensor: torch.Tensor) -> bool:
        asked.append(tensor.device)
        return False

    torch.manual_seed(0)
    compiled = CALLS[op]()
    monkeypatch.setattr(cuda_ext, "supports", refuse)
    torch.manual_seed(0)
    reference = CALLS[op]()
    assert asked == [torch.device("cpu")]
    if isinstance(compiled, list):
        assert compiled == reference
    elif isinstance(compiled, tuple):
        for got, want in zip(compiled, reference, strict=True):  # type: ignore[call-overload]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(compiled, reference, atol=1e-4, rtol=1e-5)
