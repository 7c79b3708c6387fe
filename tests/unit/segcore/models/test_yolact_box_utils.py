"""YOLACT's box math against torchvision and against its own inverses."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_convert, box_iou

from segcore.models.yolact.box_utils import (
    decode,
    encode,
    jaccard,
    make_priors,
    point_form,
    sanitize,
)


def _boxes(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 300
    wh = torch.rand(n, 2, generator=gen) * 150 + 0.5
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_jaccard_equals_torchvisions_box_iou(dtype: torch.dtype) -> None:
    a, b = _boxes(57, seed=1, dtype=dtype), _boxes(91, seed=2, dtype=dtype)
    b[:5] = a[:5]  # identical boxes: IoU 1
    b[5] = torch.tensor([1000.0, 1000, 1010, 1010], dtype=dtype)  # disjoint from all: IoU 0
    iou = jaccard(a, b)
    assert iou.shape == (57, 91) and iou.dtype == dtype
    torch.testing.assert_close(iou, box_iou(a, b))
    assert torch.allclose(iou.diagonal()[:5], torch.ones(5, dtype=dtype))
    assert (iou[:, 5] == 0).all()
    assert (iou > 0).any() and (iou < 1).any()


def test_jaccard_batched_equals_box_iou_per_batch() -> None:
    a = torch.stack([_boxes(20, seed=s) for s in range(3)])
    b = torch.stack([_boxes(30, seed=10 + s) for s in range(3)])
    iou = jaccard(a, b)
    assert iou.shape == (3, 20, 30)
    for i in range(3):
        torch.testing.assert_close(iou[i], box_iou(a[i], b[i]))


def test_encode_inverts_decode() -> None:
    gen = torch.Generator().manual_seed(3)
    priors = make_priors(5, 7, (24.0, 30.0), (1.0, 0.5, 2.0), 550, False, torch.device("cpu"))
    assert priors.shape == (5 * 7 * 6, 4)
    loc = torch.randn(priors.shape[0], 4, generator=gen)
    torch.testing.assert_close(encode(decode(loc, priors), priors), loc, atol=1e-4, rtol=1e-4)
    # Zero offsets decode to the priors themselves.
    torch.testing.assert_close(decode(torch.zeros_like(priors), priors), point_form(priors))


def test_point_form_equals_torchvisions_cxcywh_to_xyxy() -> None:
    priors = make_priors(3, 4, (48.0,), (1.0, 2.0), 550, True, torch.device("cpu"))
    torch.testing.assert_close(point_form(priors), box_convert(priors, "cxcywh", "xyxy"))


def test_priors_follow_the_official_order_and_anchor_shapes() -> None:
    square = make_priors(2, 3, (110.0,), (1.0, 0.5, 2.0), 550, True, torch.device("cpu"))
    plain = make_priors(2, 3, (110.0,), (1.0, 0.5, 2.0), 550, False, torch.device("cpu"))
    # Row-major cells, then aspect ratios: cell (row 0, column 1) is the second.
    torch.testing.assert_close(square[3, :2], torch.tensor([1.5 / 3, 0.5 / 2]))
    torch.testing.assert_close(square[3 * 3 + 0, :2], torch.tensor([0.5 / 3, 1.5 / 2]))
    assert torch.equal(square[:, 2], square[:, 3])  # use_square_anchors: h = w
    # Aspect ratio 2: w = s * sqrt(2), h = s / sqrt(2), relative to the input side.
    torch.testing.assert_close(plain[2, 2:], torch.tensor([0.2 * 2**0.5, 0.2 / 2**0.5]))


def test_sanitize_orders_pads_and_clamps() -> None:
    x1 = torch.tensor([0.5, 0.9, -0.2, 0.1])
    x2 = torch.tensor([0.6, 0.2, 0.3, 1.4])
    lo, hi = sanitize(x1, x2, 100, padding=1)
    torch.testing.assert_close(lo, torch.tensor([49.0, 19.0, 0.0, 9.0]))
    torch.testing.assert_close(hi, torch.tensor([61.0, 91.0, 31.0, 100.0]))
    lo, hi = sanitize(x1, x2, 100)
    torch.testing.assert_close(lo, torch.tensor([50.0, 20.0, 0.0, 10.0]))
    torch.testing.assert_close(hi, torch.tensor([60.0, 90.0, 30.0, 100.0]))
