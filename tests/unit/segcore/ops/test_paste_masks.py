"""paste_masks: the compiled CPU kernel and the PyTorch reference against torchvision."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

import cuda_ext
from segcore.ops import expand_boxes, paste_masks, paste_masks_reference


def random_case(
    n: int, height: int, width: int, m: int = 28, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks and boxes whose centres lie in the image and whose sides may cross its edges."""
    gen = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, 1, m, m, generator=gen, dtype=dtype)
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = (torch.rand(n, 2, generator=gen) * 0.8 * size + 0.5) / 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    return masks, boxes


def compiled(masks: torch.Tensor, boxes: torch.Tensor, shape: tuple[int, int], padding: int = 1):
    out: torch.Tensor = torch.ops.cuda_ext.paste_masks(
        masks, expand_boxes(boxes, masks.shape[-1], padding), shape[0], shape[1], padding
    )
    return out


def reference(masks: torch.Tensor, boxes: torch.Tensor, shape: tuple[int, int], padding: int = 1):
    return paste_masks_reference(
        masks, expand_boxes(boxes, masks.shape[-1], padding), shape, padding
    )


IMPLS = {"compiled": compiled, "reference": reference, "front": paste_masks}


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest, compiled_ops: None):
    return IMPLS[request.param]


@pytest.mark.parametrize(
    ("height", "width"), [(50, 60), (37, 23), (480, 640), (720, 1280), (1, 1), (300, 7)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_torchvision(impl, height: int, width: int, seed: int) -> None:
    masks, boxes = random_case(24, height, width, seed=seed)
    expected = paste_masks_in_image(masks, boxes, (height, width))
    got = impl(masks, boxes, (height, width))
    assert got.shape == (24, 1, height, width)
    assert got.dtype == masks.dtype
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_boxes_partly_outside_every_edge(impl) -> None:
    height, width = 40, 50
    masks = torch.rand(4, 1, 14, 14, generator=torch.Generator().manual_seed(3))
    boxes = torch.tensor(
        [[-20.0, 5, 10, 30], [30, -15, 45, 10], [35, 20, 80, 33], [10, 30, 30, 70]]
    )
    expected = paste_masks_in_image(masks, boxes, (height, width))
    got = impl(masks, boxes, (height, width))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (got[:, :, :, :] > 0).any(dim=(1, 2, 3)).all(), "every mask shows in the image"


@pytest.mark.parametrize("padding", [0, 1, 3])
@pytest.mark.parametrize("m", [1, 7, 28])
def test_padding_and_mask_sizes(impl, padding: int, m: int) -> None:
    masks, boxes = random_case(9, 64, 80, m=m, seed=5)
    expected = paste_masks_in_image(masks, boxes, (64, 80), padding=padding)
    torch.testing.assert_close(impl(masks, boxes, (64, 80), padding), expected, atol=1e-5, rtol=0)


def test_float64(impl) -> None:
    masks, boxes = random_case(6, 33, 47, dtype=torch.float64, seed=2)
    expected = paste_masks_in_image(masks, boxes.double(), (33, 47))
    got = impl(masks, boxes.double(), (33, 47))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


def test_no_boxes(impl) -> None:
    out = impl(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (30, 40))
    assert out.shape == (0, 1, 30, 40)


def test_zero_area_boxes(impl) -> None:
    masks = torch.ones(3, 1, 28, 28)
    boxes = torch.tensor([[10.0, 10, 10, 10], [5.0, 7, 5, 20], [0.0, 0, 0, 0]])
    expected = paste_masks_in_image(masks, boxes, (32, 32))
    torch.testing.assert_close(impl(masks, boxes, (32, 32)), expected, atol=1e-5, rtol=0)


def test_box_wholly_outside_is_empty(impl) -> None:
    # torchvision raises on these; the op returns an empty mask.
    masks = torch.ones(3, 1, 28, 28)
    boxes = torch.tensor([[100.0, 5, 120, 20], [-60.0, 5, -30, 20], [5.0, 50, 20, 90]])
    out = impl(masks, boxes, (40, 40))
    assert out.shape == (3, 1, 40, 40)
    assert not out.any()


def test_one_mask(impl) -> None:
    masks, boxes = random_case(1, 100, 120, seed=9)
    expected = paste_masks_in_image(masks, boxes, (100, 120))
    torch.testing.assert_close(impl(masks, boxes, (100, 120)), expected, atol=1e-5, rtol=0)


def test_many_boxes(compiled_ops: None) -> None:
    masks, boxes = random_case(2000, 48, 64, seed=11)
    expected = paste_masks_in_image(masks, boxes, (48, 64))
    torch.testing.assert_close(compiled(masks, boxes, (48, 64)), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(reference(masks, boxes, (48, 64)), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", range(4))
def test_random_boxes_crossing_edges_and_tiny(impl, seed: int) -> None:
    """Many boxes whose centres lie in the image: sides far past every edge, boxes of a
    fraction of a pixel to a few pixels, and boxes larger than the image."""
    gen = torch.Generator().manual_seed(100 + seed)
    height, width = [(90, 130), (57, 41), (240, 320), (17, 200)][seed]
    m = [28, 14, 28, 5][seed]
    n = 150
    masks = torch.rand(n, 1, m, m, generator=gen)
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    kind = torch.arange(n) % 3
    tiny = torch.rand(n, 2, generator=gen) * 3 + 0.05
    large = torch.rand(n, 2, generator=gen) * 1.5 * size + 1
    medium = torch.rand(n, 2, generator=gen) * 0.5 * size + 1
    half = torch.where((kind == 0)[:, None], tiny, torch.where((kind == 1)[:, None], large, medium))
    boxes = torch.cat([centre - half, centre + half], dim=1)
    int_boxes = expand_boxes(boxes, m, 1)
    assert (int_boxes[:, 0] < 0).any() and (int_boxes[:, 2] >= width).any()
    assert (int_boxes[:, 1] < 0).any() and (int_boxes[:, 3] >= height).any()
    assert ((int_boxes[:, 2] - int_boxes[:, 0]) < 3).any()
    expected = paste_masks_in_image(masks, boxes, (height, width))
    got = impl(masks, boxes, (height, width))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    if impl is paste_masks:
        binary = paste_masks(masks, boxes, (height, width), threshold=0.5)
        assert torch.equal(binary, got > 0.5)


def test_non_contiguous_inputs(impl) -> None:
    masks, boxes = random_case(8, 60, 70, seed=4)
    wide = torch.zeros(8, 1, 28, 56)
    wide[..., ::2] = masks
    strided_masks = wide[..., ::2]
    strided_boxes = boxes.t().contiguous().t()
    assert not strided_masks.is_contiguous() and not strided_boxes.is_contiguous()
    expected = paste_masks_in_image(masks, boxes, (60, 70))
    got = impl(strided_masks, strided_boxes, (60, 70))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])
def test_threshold_gives_bool_masks(impl, threshold: float) -> None:
    masks, boxes = random_case(12, 70, 90, seed=8)
    float_masks = impl(masks, boxes, (70, 90))
    if impl is paste_masks:
        binary = paste_masks(masks, boxes, (70, 90), threshold=threshold)
    else:
        int_boxes = expand_boxes(boxes, 28, 1)
        if impl is compiled:
            binary = torch.ops.cuda_ext.paste_masks(masks, int_boxes, 70, 90, 1, threshold)
        else:
            binary = paste_masks_reference(masks, int_boxes, (70, 90), 1, threshold)
    assert binary.dtype == torch.bool and binary.shape == float_masks.shape
    assert torch.equal(binary, float_masks > threshold)


def test_front_uses_the_compiled_kernel(compiled_ops: None) -> None:
    masks, boxes = random_case(3, 20, 20)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        paste_masks(masks, boxes, (20, 20))
    assert any(evt.name == "cuda_ext::paste_masks" for evt in prof.events())


def test_front_falls_back_to_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_ext, "available", lambda: False)
    masks, boxes = random_case(5, 30, 40, seed=6)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = paste_masks(masks, boxes, (30, 40))
    assert not any(evt.name == "cuda_ext::paste_masks" for evt in prof.events())
    torch.testing.assert_close(got, paste_masks_in_image(masks, boxes, (30, 40)), atol=1e-5, rtol=0)


def test_dispatcher_registration(compiled_ops: None) -> None:
    """Schema, fake (meta) kernel and dispatcher wiring, as torch.compile relies on them."""
    masks, boxes = random_case(5, 30, 40)
    int_boxes = expand_boxes(boxes, 28, 1)
    torch.library.opcheck(
        torch.ops.cuda_ext.paste_masks.default,
        (masks, int_boxes, 30, 40, 1),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"),
    )
    assert torch._C._dispatch_has_kernel_for_dispatch_key("cuda_ext::paste_masks", "CPU")


def test_reports_cuda_kernels_built(compiled_ops: None) -> None:
    # The test command builds with nvcc; a library without CUDA kernels means it did not.
    assert cuda_ext.has_cuda_kernels()


@pytest.mark.parametrize(
    ("masks", "boxes", "message"),
    [
        (torch.zeros(2, 28, 28), torch.zeros(2, 4), "masks must be"),
        (torch.zeros(2, 1, 28, 14), torch.zeros(2, 4), "masks must be"),
        (torch.zeros(2, 1, 28, 28), torch.zeros(2, 5), "boxes must be"),
        (torch.zeros(2, 1, 28, 28), torch.zeros(3, 4), "masks has 2 entries but boxes has 3"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, 4), "masks must be float"),
        (torch.zeros(2, 1, 28, 28), torch.zeros(2, 4, dtype=torch.int64), "boxes must be float"),
    ],
)
def test_front_rejects_bad_input(masks: torch.Tensor, boxes: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paste_masks(masks, boxes, (10, 10))


def test_kernel_rejects_float_boxes(compiled_ops: None) -> None:
    with pytest.raises(RuntimeError, match="boxes must be int64"):
        torch.ops.cuda_ext.paste_masks(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4), 8, 8, 1)


def test_negative_padding_rejected() -> None:
    with pytest.raises(ValueError, match="padding must be >= 0"):
        paste_masks(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4), (8, 8), padding=-1)


@pytest.mark.parametrize("shape", [(8,), (8, -1), (8.5, 3)])
def test_bad_image_shape_rejected(shape: tuple) -> None:
    with pytest.raises(ValueError, match="image_shape must be"):
        paste_masks(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4), shape)
