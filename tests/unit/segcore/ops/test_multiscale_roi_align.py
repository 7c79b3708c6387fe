"""multiscale_roi_align: the fused kernel against torchvision's MultiScaleRoIAlign."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from segcore.ops import multiscale_roi_align, multiscale_roi_align_reference


def pyramid(
    batch: int,
    channels: int,
    height: int,
    width: int,
    levels: int = 4,
    seed: int = 0,
    dtype=torch.float32,
):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(
            batch, channels, height // 2 ** (2 + i), width // 2 ** (2 + i), generator=gen
        ).to(dtype)
        for i in range(levels)
    ]


def random_boxes(n: int, height: int, width: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * 1.1 - 20
    wh = torch.rand(n, 2, generator=gen) * 400 + 0.5
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def torchvision_pool(features, boxes, image_shapes, output_size, sampling_ratio):
    names = [str(i) for i in range(len(features))]
    pooler = MultiScaleRoIAlign(names, output_size, sampling_ratio)
    return pooler(OrderedDict(zip(names, features, strict=True)), boxes, image_shapes)


IMPLS = {"compiled": multiscale_roi_align, "reference": multiscale_roi_align_reference}


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest, compiled_ops: None):
    return IMPLS[request.param]


@pytest.mark.parametrize(("output_size", "sampling_ratio"), [(7, 2), (14, 2), ((7, 5), 0), (7, -1)])
def test_equals_torchvision(impl, output_size, sampling_ratio) -> None:
    features = pyramid(2, 16, 512, 640, seed=1)
    image_shapes = [(512, 640), (480, 600)]
    boxes = [random_boxes(60, 512, 640, seed=2), random_boxes(45, 480, 600, seed=3)]
    expected = torchvision_pool(features, boxes, image_shapes, output_size, sampling_ratio)
    got = impl(features, boxes, image_shapes, output_size, sampling_ratio)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_one_level_and_float64(impl) -> None:
    features = pyramid(1, 8, 256, 256, levels=1, seed=4, dtype=torch.float64)
    boxes = [random_boxes(20, 256, 256, seed=5, dtype=torch.float64)]
    expected = torchvision_pool(features, boxes, [(256, 256)], 7, 2)
    torch.testing.assert_close(
        impl(features, boxes, [(256, 256)], 7, 2), expected, atol=1e-12, rtol=0
    )


def test_no_boxes_and_an_empty_image(impl) -> None:
    features = pyramid(2, 8, 256, 256, seed=6)
    shapes = [(256, 256), (256, 256)]
    none = impl(features, [torch.zeros(0, 4), torch.zeros(0, 4)], shapes, 7, 2)
    assert none.shape == (0, 8, 7, 7)
    some = [torch.zeros(0, 4), random_boxes(5, 256, 256, seed=7)]
    torch.testing.assert_close(
        impl(features, some, shapes, 7, 2),
        torchvision_pool(features, some, shapes, 7, 2),
        atol=1e-6,
        rtol=1e-5,
    )


def test_degenerate_and_outside_boxes(impl) -> None:
    features = pyramid(1, 4, 256, 320, seed=8)
    boxes = [
        torch.tensor(
            [
                [10.0, 10, 10, 10],  # zero area
                [50.0, 60, 40, 70],  # negative area: no level, torchvision leaves a zero row
                [400.0, 300, 500, 400],  # outside the image
                [-50.0, -50, 30, 30],  # partly outside
                [0.0, 0, 320, 256],  # the whole image
            ]
        )
    ]
    expected = torchvision_pool(features, boxes, [(256, 320)], 7, 2)
    got = impl(features, boxes, [(256, 320)], 7, 2)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert not got[1].any()


def test_boxes_inverted_both_ways_with_aligned(compiled_ops: None) -> None:
    """aligned=True keeps a box's negative extent, so a box inverted in x and in y has a
    positive area (a level) and negative sample grids: torchvision takes no sample (a zero
    row), and so must the kernel (no read of samples it never computed)."""
    features = pyramid(1, 4, 256, 320, seed=9)
    # a sound box of the same level first, so stale samples would be there to read
    boxes = [torch.tensor([[10.0, 10, 140, 130], [250.0, 200, 100, 90], [60.0, 70, 50, 60]])]
    for ratio in (0, -1):
        expected = multiscale_roi_align_reference(features, boxes, [(256, 320)], 7, ratio, True)
        got = multiscale_roi_align(features, boxes, [(256, 320)], 7, ratio, True)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
        assert got[0].any() and not got[1:].any()


def test_many_boxes(compiled_ops: None) -> None:
    features = pyramid(1, 4, 256, 256, seed=9)
    boxes = [random_boxes(10_000, 256, 256, seed=10)]
    expected = torchvision_pool(features, boxes, [(256, 256)], 7, 2)
    torch.testing.assert_close(
        multiscale_roi_align(features, boxes, [(256, 256)], 7, 2), expected, atol=1e-6, rtol=1e-5
    )


def test_non_contiguous_features(impl) -> None:
    features = [
        f.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
        for f in pyramid(1, 8, 256, 256, seed=11)
    ]
    assert not features[0].is_contiguous()
    boxes = [random_boxes(30, 256, 256, seed=12)]
    expected = torchvision_pool([f.contiguous() for f in features], boxes, [(256, 256)], 7, 2)
    torch.testing.assert_close(
        impl(features, boxes, [(256, 256)], 7, 2), expected, atol=1e-6, rtol=1e-5
    )


def test_channels_last_features(impl) -> None:
    features = pyramid(2, 16, 256, 256, seed=19)
    shapes = [(256, 256), (256, 256)]
    boxes = [random_boxes(30, 256, 256, seed=20), random_boxes(12, 256, 256, seed=21)]
    expected = torchvision_pool(features, boxes, shapes, 7, 2)
    last = [f.contiguous(memory_format=torch.channels_last) for f in features]
    assert not last[0].is_contiguous()
    torch.testing.assert_close(impl(last, boxes, shapes, 7, 2), expected, atol=1e-6, rtol=1e-5)


def test_gradients_equal_torchvision(compiled_ops: None) -> None:
    base = pyramid(2, 4, 128, 160, seed=13)
    boxes = [random_boxes(25, 128, 160, seed=14), random_boxes(10, 128, 160, seed=15)]
    shapes = [(128, 160), (120, 150)]
    grads = []
    for fn in (multiscale_roi_align, lambda f, b, s, o, r: torchvision_pool(f, b, s, o, r)):
        features = [f.clone().requires_grad_() for f in base]
        out = fn(features, boxes, shapes, 7, 2)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([f.grad for f in features])
    for ours, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_gradcheck_float64(compiled_ops: None) -> None:
    features = [
        f.requires_grad_() for f in pyramid(1, 2, 64, 64, levels=2, seed=16, dtype=torch.float64)
    ]
    boxes = [
        torch.tensor(
            [[3.3, 4.1, 40.2, 30.7], [10.0, 12.5, 20.5, 60.0], [1.0, 2.0, 63.0, 62.0]],
            dtype=torch.float64,
        )
    ]
    assert torch.autograd.gradcheck(
        lambda a, b: multiscale_roi_align([a, b], boxes, [(64, 64)], 3, 2), tuple(features)
    )


def test_registered_for_tracing(compiled_ops: None) -> None:
    from segcore.ops.multiscale_roi_align import assign_levels

    features = pyramid(1, 4, 128, 128, seed=17)
    boxes = [random_boxes(10, 128, 128, seed=18)]
    scales, rois, levels = assign_levels(features, boxes, [(128, 128)])
    torch.library.opcheck(
        torch.ops.cuda_ext.multiscale_roi_align.default,
        (features, rois, levels, scales, 7, 7, 2, False),
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )


@pytest.mark.parametrize(
    ("features", "boxes", "message"),
    [
        ([torch.zeros(1, 4, 8)], [torch.zeros(1, 4)], r"features\[0\] must be"),
        (
            [torch.zeros(1, 4, 8, 8), torch.zeros(1, 5, 4, 4)],
            [torch.zeros(1, 4)],
            r"features\[1\] must share",
        ),
        ([torch.zeros(1, 4, 8, 8)], [torch.zeros(1, 3)], r"boxes\[0\] must be"),
        ([torch.zeros(1, 4, 8, 8)], [torch.zeros(1, 4), torch.zeros(1, 4)], "boxes has 2 entries"),
        (
            [torch.zeros(1, 4, 8, 8)],
            [torch.zeros(1, 4, dtype=torch.float64)],
            r"boxes\[0\] must match",
        ),
        ([torch.zeros(1, 4, 8, 8, dtype=torch.int64)], [torch.zeros(1, 4)], "must be floating"),
    ],
)
def test_rejects_bad_input(features, boxes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        multiscale_roi_align(features, boxes, [(32, 32)], 7, 2)
