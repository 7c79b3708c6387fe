"""assemble_masks: the fused kernel against YOLACT's matmul, sigmoid and crop."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from segcore.ops import assemble_masks, assemble_masks_reference


def yolact_assemble(protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor):
    """YOLACT's lincomb and crop for one image, with protos (K, H, W)."""
    _, h, w = protos.shape
    masks = torch.sigmoid(protos.permute(1, 2, 0) @ coeffs.t())  # (H, W, N)
    rows = torch.arange(w, dtype=boxes.dtype)[None, :, None].expand(h, w, -1)
    cols = torch.arange(h, dtype=boxes.dtype)[:, None, None].expand(h, w, -1)
    crop = (
        (rows >= boxes[:, 0]) & (rows < boxes[:, 2]) & (cols >= boxes[:, 1]) & (cols < boxes[:, 3])
    )
    return (masks * crop).permute(2, 0, 1)


def random_case(n: int, k: int = 32, h: int = 69, w: int = 69, seed: int = 0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    protos = torch.randn(k, h, w, generator=gen).to(dtype)
    coeffs = torch.randn(n, k, generator=gen).to(dtype)
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) - 5
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=gen) * 40], dim=1).to(dtype)
    return protos, coeffs, boxes


@pytest.mark.parametrize("n", [1, 7, 100])
def test_equals_yolact(compiled_ops: None, n: int) -> None:
    protos, coeffs, boxes = random_case(n, seed=n)
    expected = yolact_assemble(protos, coeffs, boxes)
    for impl in (
        assemble_masks,
        lambda p, c, b: assemble_masks_reference(
            p[None], c, b, torch.zeros(len(c), dtype=torch.int64)
        ),
    ):
        torch.testing.assert_close(impl(protos, coeffs, boxes), expected, atol=1e-6, rtol=1e-5)


def test_batched_form(compiled_ops: None) -> None:
    images = [random_case(n, seed=10 + n) for n in (3, 0, 5)]
    protos = torch.stack([p for p, _, _ in images])
    coeffs = torch.cat([c for _, c, _ in images])
    boxes = torch.cat([b for _, _, b in images])
    batch_index = torch.tensor([0, 0, 0, 2, 2, 2, 2, 2])
    expected = torch.cat([yolact_assemble(p, c, b) for p, c, b in images])
    got = assemble_masks(protos, coeffs, boxes, batch_index)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        assemble_masks_reference(protos, coeffs, boxes, batch_index), expected, atol=1e-6, rtol=1e-5
    )


def test_box_edges_and_boxes_outside(compiled_ops: None) -> None:
    protos, coeffs, _ = random_case(4, h=10, w=12)
    boxes = torch.tensor([[2.0, 3, 5, 7], [2.5, 3.5, 5.5, 7.5], [20.0, 20, 30, 30], [4.0, 4, 4, 9]])
    got = assemble_masks(protos, coeffs, boxes)
    inside = got > 0
    assert inside[0, 3:7, 2:5].all() and inside[0].sum() == 4 * 3
    assert inside[1, 4:8, 3:6].all() and inside[1].sum() == 4 * 3
    assert not inside[2].any() and not inside[3].any()
    torch.testing.assert_close(got, yolact_assemble(protos, coeffs, boxes), atol=1e-6, rtol=1e-5)


def test_no_instances(compiled_ops: None) -> None:
    protos, _, _ = random_case(1)
    out = assemble_masks(protos, torch.zeros(0, 32), torch.zeros(0, 4))
    assert out.shape == (0, 69, 69)


def test_non_contiguous(compiled_ops: None) -> None:
    protos, coeffs, boxes = random_case(6, seed=4)
    strided = protos.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    assert not strided.is_contiguous()
    torch.testing.assert_close(
        assemble_masks(strided, coeffs.t().contiguous().t(), boxes),
        yolact_assemble(protos, coeffs, boxes),
        atol=1e-6,
        rtol=1e-5,
    )


def test_gradcheck_float64(compiled_ops: None) -> None:
    protos, coeffs, boxes = random_case(3, k=4, h=7, w=9, seed=1, dtype=torch.float64)
    protos = torch.stack([protos, protos.flip(1)]).requires_grad_()
    coeffs.requires_grad_()
    boxes = boxes.clamp(0, 6)
    batch_index = torch.tensor([0, 1, 1])
    assert torch.autograd.gradcheck(
        lambda p, c: assemble_masks(p, c, boxes, batch_index), (protos, coeffs)
    )


def test_gradients_match_the_reference(compiled_ops: None) -> None:
    protos, coeffs, boxes = random_case(5, seed=6)
    grads = []
    for impl in (
        assemble_masks,
        lambda p, c, b: assemble_masks_reference(p[None], c, b, torch.zeros(5, dtype=torch.int64)),
    ):
        p, c = protos.clone().requires_grad_(), coeffs.clone().requires_grad_()
        (impl(p, c, boxes) ** 2).sum().backward()
        grads.append((p.grad, c.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-5, rtol=1e-4)


def test_registered_for_tracing(compiled_ops: None) -> None:
    protos, coeffs, boxes = random_case(3, seed=2)
    torch.library.opcheck(
        torch.ops.cuda_ext.assemble_masks.default,
        (protos[None], coeffs, boxes, torch.zeros(3, dtype=torch.int64)),
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.zeros(4, 5), torch.zeros(1, 4), torch.zeros(1, 4)), "protos must be"),
        ((torch.zeros(4, 5, 5), torch.zeros(1, 3), torch.zeros(1, 4)), "coeffs must be"),
        ((torch.zeros(4, 5, 5), torch.zeros(2, 4), torch.zeros(1, 4)), "boxes must be"),
        (
            (torch.zeros(4, 5, 5), torch.zeros(1, 4, dtype=torch.float64), torch.zeros(1, 4)),
            "share a dtype",
        ),
        (
            (torch.zeros(2, 4, 5, 5), torch.zeros(1, 4), torch.zeros(1, 4)),
            "batch_index is required",
        ),
    ],
)
def test_rejects_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assemble_masks(*args)


def test_rejects_batch_index_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"batch_index must lie in \[0, 2\)"):
        assemble_masks(
            torch.zeros(2, 4, 5, 5), torch.zeros(1, 4), torch.zeros(1, 4), torch.tensor([2])
        )


def test_rejects_negative_batch_index() -> None:
    with pytest.raises(ValueError, match=r"batch_index must lie in \[0, 2\)"):
        assemble_masks(
            torch.zeros(2, 4, 5, 5), torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([0, -1])
        )


@pytest.mark.parametrize("device", ["meta", "cuda"])
def test_off_the_cpu_batch_index_is_not_read_on_the_host(compiled_ops: None, device: str) -> None:
    """Off the CPU the range check is queued on the device: nothing waits for batch_index's
    values. Under FakeTensorMode (and on meta) a host read of them raises."""
    with FakeTensorMode():
        protos = torch.zeros(2, 4, 5, 6, device=device)
        coeffs = torch.zeros(3, 4, device=device)
        boxes = torch.zeros(3, 4, device=device)
        batch_index = torch.zeros(3, dtype=torch.int64, device=device)
        with pytest.raises(DataDependentOutputException):
            int(batch_index.max())
        out = assemble_masks(protos, coeffs, boxes, batch_index)
    assert out.shape == (3, 5, 6) and out.device.type == device
