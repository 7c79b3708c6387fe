"""Every op front names the argument that is wrong: mixed devices, dtypes, shapes."""

from __future__ import annotations

import pytest
import torch

from segcore.ops import (
    assemble_masks,
    fast_nms,
    multiscale_roi_align,
    paste_masks,
)

META = torch.device("meta")  # a second device that exists on every machine


def test_paste_masks_mixed_devices() -> None:
    with pytest.raises(ValueError, match="masks on cpu, boxes on meta"):
        paste_masks(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, device=META), (8, 8))


def test_fast_nms_mixed_devices() -> None:
    with pytest.raises(ValueError, match="boxes on cpu, scores on meta"):
        fast_nms(torch.zeros(3, 4), torch.zeros(2, 3, device=META))


def test_assemble_masks_mixed_devices() -> None:
    with pytest.raises(ValueError, match="coeffs on meta"):
        assemble_masks(torch.zeros(4, 5, 5), torch.zeros(1, 4, device=META), torch.zeros(1, 4))


def test_assemble_masks_batch_index_dtype() -> None:
    with pytest.raises(ValueError, match="batch_index must be of dtype int64"):
        assemble_masks(
            torch.zeros(1, 4, 5, 5),
            torch.zeros(1, 4),
            torch.zeros(1, 4),
            torch.zeros(1, dtype=torch.int32),
        )


def test_multiscale_roi_align_mixed_devices() -> None:
    with pytest.raises(ValueError, match=r"boxes\[0\] must match the features' dtype and device"):
        multiscale_roi_align(
            [torch.zeros(1, 4, 8, 8)], [torch.zeros(1, 4, device=META)], [(32, 32)], 7, 2
        )


def test_multiscale_roi_align_bad_output_size() -> None:
    with pytest.raises(ValueError, match="output_size must be positive"):
        multiscale_roi_align([torch.zeros(1, 4, 8, 8)], [torch.zeros(1, 4)], [(32, 32)], 0, 2)


def test_assemble_masks_ten_thousand_instances(compiled_ops: None) -> None:
    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(1, 8, 16, 16, generator=gen)
    coeffs = torch.randn(10_000, 8, generator=gen)
    xy = torch.rand(10_000, 2, generator=gen) * 16
    boxes = torch.cat([xy - 3, xy + 3], dim=1)
    from segcore.ops import assemble_masks_reference

    index = torch.zeros(10_000, dtype=torch.int64)
    torch.testing.assert_close(
        assemble_masks(protos, coeffs, boxes, index),
        assemble_masks_reference(protos, coeffs, boxes, index),
        atol=1e-6,
        rtol=1e-5,
    )
