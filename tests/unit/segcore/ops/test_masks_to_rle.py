"""masks_to_rle: the compiled kernels and the reference against pycocotools' encode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.models.detection.roi_heads import paste_masks_in_image

import cuda_ext
from segcore.ops import masks_to_rle, masks_to_rle_reference, paste_masks


def coco(masks: torch.Tensor) -> list[dict]:
    if masks.shape[0] == 0:
        return []
    fortran = np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8))
    return mask_utils.encode(fortran)


IMPLS = {"compiled": masks_to_rle, "reference": masks_to_rle_reference}


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest, compiled_ops: None):
    return IMPLS[request.param]


def _same(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g["size"] == list(e["size"])
        assert g["counts"] == e["counts"]
        assert isinstance(g["counts"], bytes)


@pytest.mark.parametrize("shape", [(6, 30, 40), (3, 1, 1), (4, 7, 1), (2, 1, 9), (1, 64, 48)])
@pytest.mark.parametrize("density", [0.05, 0.5, 0.95])
def test_equals_pycocotools_on_random_masks(impl, shape: tuple[int, ...], density: float) -> None:
    gen = torch.Generator().manual_seed(sum(shape))
    masks = torch.rand(*shape, generator=gen) < density
    _same(impl(masks), coco(masks))


def test_all_empty_and_all_full(impl) -> None:
    masks = torch.zeros(2, 20, 30, dtype=torch.bool)
    masks[1] = True
    got = impl(masks)
    _same(got, coco(masks))
    assert mask_utils.decode(got[1]).all()


def test_long_runs_use_multi_character_counts(impl) -> None:
    # Counts above 2**4 and differences below zero exercise the sign and continuation bits.
    masks = torch.zeros(3, 1080, 1920, dtype=torch.bool)
    masks[0, 100:900, 300:1500] = True
    masks[1, :, 1000:] = True
    masks[2, 5:6, :] = True
    _same(impl(masks), coco(masks))


def test_uint8_and_non_contiguous(impl) -> None:
    gen = torch.Generator().manual_seed(7)
    base = torch.rand(5, 40, 30, generator=gen) > 0.6
    transposed = base.transpose(1, 2).contiguous().transpose(1, 2)
    assert not transposed.is_contiguous()
    _same(impl(transposed), coco(base))
    _same(impl(base.to(torch.uint8) * 3), coco(base))


def test_no_masks(impl) -> None:
    assert impl(torch.zeros(0, 10, 10, dtype=torch.bool)) == []


def test_many_masks(compiled_ops: None) -> None:
    gen = torch.Generator().manual_seed(1)
    masks = torch.rand(2000, 12, 16, generator=gen) > 0.5
    _same(masks_to_rle(masks), coco(masks))


def test_decodes_back(impl) -> None:
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand(4, 33, 21, generator=gen) > 0.3
    for rle, mask in zip(impl(masks), masks, strict=True):
        assert (mask_utils.decode(rle) == mask.numpy()).all()


def test_paste_then_encode_equals_torchvision_then_pycocotools(compiled_ops: None) -> None:
    gen = torch.Generator().manual_seed(0)
    n, height, width = 30, 180, 320
    masks = torch.rand(n, 1, 28, 28, generator=gen)
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = (torch.rand(n, 2, generator=gen) * 0.5 * size + 2) / 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    pasted = paste_masks(masks, boxes, (height, width), threshold=0.5)
    assert pasted.dtype == torch.bool
    expected = paste_masks_in_image(masks, boxes, (height, width))[:, 0] > 0.5
    # Values within 1e-5 of torchvision can fall either side of the threshold only when they
    # sit on it; these random masks put none there.
    assert torch.equal(pasted[:, 0], expected)
    _same(masks_to_rle(pasted[:, 0]), coco(expected))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="masks must be"):
        masks_to_rle(torch.zeros(10, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="masks must be of dtype bool, uint8"):
        masks_to_rle(torch.zeros(1, 10, 10))
    with pytest.raises(ValueError, match=r"masks must be a torch\.Tensor"):
        masks_to_rle(np.zeros((1, 4, 4), dtype=bool))  # type: ignore[arg-type]


def test_compiled_transitions_registered(compiled_ops: None) -> None:
    masks = torch.rand(3, 9, 7) > 0.5
    positions, offsets = torch.ops.cuda_ext.rle_transitions(masks)
    assert positions.dtype == offsets.dtype == torch.int64
    assert offsets.tolist()[0] == 0 and offsets.tolist()[-1] == positions.numel()
    assert torch._C._dispatch_has_kernel_for_dispatch_key("cuda_ext::rle_transitions", "CPU")
    assert cuda_ext.has_cuda_kernels()
