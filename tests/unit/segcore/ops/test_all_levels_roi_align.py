"""all_levels_roi_align: every RoI on every level, against torchvision's roi_align per level."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torchvision.ops import roi_align

from segcore.ops import all_levels_roi_align, all_levels_roi_align_reference

STRIDES = (4, 8, 16, 32)


def pyramid(
    batch: int,
    channels: int,
    height: int,
    width: int,
    levels: int = 4,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Levels of strides 4, 8, 16, ... of a height x width image."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, channels, height // s, width // s, generator=gen).to(dtype)
        for s in STRIDES[:levels]
    ]


def random_boxes(
    n: int, height: int, width: int, seed: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(n, 4) xyxy, some reaching past the image, sides from 0.5 to ~400 pixels."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * 1.1 - 20
    wh = torch.rand(n, 2, generator=gen) * 400 + 0.5
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def per_level(
    features: list[torch.Tensor],
    boxes: list[torch.Tensor],
    output_size: int | tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """What a user writes: torchvision's roi_align once per level, scale 1 / stride."""
    rois = torch.cat(
        [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)]
    )
    return torch.stack(
        [
            roi_align(f, rois, output_size, 1.0 / s, sampling_ratio, aligned)
            for f, s in zip(features, STRIDES, strict=False)
        ]
    )


Impl = Callable[..., torch.Tensor]
IMPLS: dict[str, Impl] = {
    "compiled": all_levels_roi_align,
    "reference": all_levels_roi_align_reference,
}


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest, compiled_ops: None) -> Impl:
    return IMPLS[request.param]


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("output_size", [7, 14, (7, 5)])
def test_equals_torchvision_per_level(
    impl: Impl, output_size: int | tuple[int, int], sampling_ratio: int, aligned: bool
) -> None:
    features = pyramid(2, 16, 256, 320, seed=1)
    shapes = [(256, 320), (240, 300)]
    boxes = [random_boxes(40, 256, 320, seed=2), random_boxes(25, 240, 300, seed=3)]
    got = impl(features, boxes, shapes, output_size, sampling_ratio, aligned)
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    assert got.shape == (4, 65, 16, *size)
    expected = per_level(features, boxes, output_size, sampling_ratio, aligned)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("layout", ["planar", "converted", "channels_last", "strided"])
def test_every_memory_path(compiled_ops: None, layout: str) -> None:
    """Few RoIs on large maps read the planes as stored; many RoIs convert the levels to
    channels-last first; channels-last levels are read as stored; other strides either way."""
    if layout == "planar":
        features, n = pyramid(1, 24, 512, 512, seed=4), 2
    else:
        features, n = pyramid(1, 24, 128, 128, seed=4), 300
    if layout == "channels_last":
        features = [f.contiguous(memory_format=torch.channels_last) for f in features]
    if layout == "strided":
        features = [f.transpose(2, 3).contiguous().transpose(2, 3) for f in features]
    side = features[0].shape[-1] * 4
    boxes = [random_boxes(n, side, side, seed=5)]
    got = all_levels_roi_align(features, boxes, [(side, side)], 7, 2)
    expected = per_level([f.contiguous() for f in features], boxes, 7, 2, False)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_float64(impl: Impl) -> None:
    features = pyramid(2, 5, 128, 160, seed=6, dtype=torch.float64)
    boxes = [random_boxes(30, 128, 160, seed=7, dtype=torch.float64) for _ in range(2)]
    got = impl(features, boxes, [(128, 160)] * 2, 7, 0, True)
    torch.testing.assert_close(got, per_level(features, boxes, 7, 0, True), atol=1e-12, rtol=1e-12)


def test_no_rois_and_an_image_without_rois(impl: Impl) -> None:
    features = pyramid(2, 8, 128, 128, seed=8)
    shapes = [(128, 128), (128, 128)]
    none = impl(features, [torch.zeros(0, 4), torch.zeros(0, 4)], shapes, 7, 2)
    assert none.shape == (4, 0, 8, 7, 7)
    some = [torch.zeros(0, 4), random_boxes(5, 128, 128, seed=9)]
    got = impl(features, some, shapes, 7, 2)
    assert got.shape == (4, 5, 8, 7, 7)
    torch.testing.assert_close(got, per_level(features, some, 7, 2, False), atol=1e-6, rtol=1e-5)


def test_a_batch_of_no_images(compiled_ops: None) -> None:
    features = [torch.zeros(0, 8, 16, 16), torch.zeros(0, 8, 8, 8)]
    assert all_levels_roi_align(features, [], [], 7, 2).shape == (2, 0, 8, 7, 7)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_degenerate_and_outside_boxes(impl: Impl, sampling_ratio: int, aligned: bool) -> None:
    features = pyramid(1, 4, 128, 160, seed=10)
    boxes = [
        torch.tensor(
            [
                [10.0, 10, 10, 10],  # zero area
                [50.0, 60, 40, 50],  # inverted
                [300.0, 200, 400, 300],  # outside the image
                [-50.0, -50, 30, 30],  # partly outside
                [0.0, 0, 160, 128],  # the whole image
                [100.0, 100, 100.5, 100.5],  # under a pixel
            ]
        )
    ]
    got = impl(features, boxes, [(128, 160)], 7, sampling_ratio, aligned)
    expected = per_level(features, boxes, 7, sampling_ratio, aligned)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert not got[:, 2].any()  # nothing sampled outside the map


def test_scales_follow_the_largest_image(impl: Impl) -> None:
    """Scales are inferred as MultiScaleRoIAlign infers them: level height over the largest
    image height, rounded to a power of two."""
    features = pyramid(2, 4, 256, 256, levels=2, seed=11)
    boxes = [random_boxes(10, 256, 256, seed=12), random_boxes(10, 200, 180, seed=13)]
    got = impl(features, boxes, [(250, 256), (200, 180)], 7, 2)
    torch.testing.assert_close(got, per_level(features, boxes, 7, 2, False), atol=1e-6, rtol=1e-5)


def test_threads_give_identical_results(compiled_ops: None) -> None:
    features = pyramid(2, 64, 256, 256, seed=14)
    boxes = [random_boxes(200, 256, 256, seed=15), random_boxes(150, 256, 256, seed=16)]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = all_levels_roi_align(features, boxes, [(256, 256)] * 2, 7, 2)
        torch.set_num_threads(2)
        two = all_levels_roi_align(features, boxes, [(256, 256)] * 2, 7, 2)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def _weighted_sum(out: torch.Tensor) -> torch.Tensor:
    return (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()


@pytest.mark.parametrize(("sampling_ratio", "aligned"), [(2, False), (0, True), (0, False)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradients_equal_torchvision(
    compiled_ops: None, sampling_ratio: int, aligned: bool, channels_last: bool
) -> None:
    base = pyramid(2, 6, 128, 160, seed=17)
    if channels_last:
        base = [f.contiguous(memory_format=torch.channels_last) for f in base]
    boxes = [random_boxes(25, 128, 160, seed=18), random_boxes(10, 120, 150, seed=19)]
    shapes = [(128, 160), (120, 150)]
    grads = []
    for fn in (
        lambda f: all_levels_roi_align(f, boxes, shapes, (7, 6), sampling_ratio, aligned),
        lambda f: per_level(f, boxes, (7, 6), sampling_ratio, aligned),
    ):
        features = [f.detach().clone().requires_grad_() for f in base]
        _weighted_sum(fn(features)).backward()
        grads.append([f.grad for f in features])
    for ours, theirs in zip(*grads, strict=True):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_gradients_through_some_levels_only(compiled_ops: None) -> None:
    """A level that takes no gradient gets none; the others get theirs."""
    features = pyramid(1, 3, 64, 64, levels=2, seed=20)
    features[0].requires_grad_()
    boxes = [random_boxes(6, 64, 64, seed=21)]
    all_levels_roi_align(features, boxes, [(64, 64)], 5, 2).sum().backward()
    assert features[0].grad is not None and features[0].grad.abs().sum() > 0
    assert features[1].grad is None


def test_gradcheck_float64(compiled_ops: None) -> None:
    features = [
        f.requires_grad_() for f in pyramid(2, 2, 48, 40, levels=2, seed=22, dtype=torch.float64)
    ]
    boxes = [
        torch.tensor([[3.3, 4.1, 40.2, 30.7], [10.0, 12.5, 20.5, 46.0]], dtype=torch.float64),
        torch.tensor([[1.0, 2.0, 39.0, 47.0]], dtype=torch.float64),
    ]
    shapes = [(48, 40), (48, 40)]
    for sampling_ratio, aligned in ((2, False), (0, True)):
        assert torch.autograd.gradcheck(
            lambda a, b, r=sampling_ratio, al=aligned: all_levels_roi_align(
                [a, b], boxes, shapes, (3, 2), r, al
            ),
            tuple(features),
        )


def test_opcheck(compiled_ops: None) -> None:
    from segcore.ops.multiscale_roi_align import infer_scales, to_rois

    features = pyramid(2, 4, 128, 128, seed=23)
    boxes = [random_boxes(7, 128, 128, seed=24), random_boxes(3, 128, 128, seed=25)]
    scales = infer_scales(features, [(128, 128)] * 2)
    for sampling_ratio, aligned in ((2, False), (0, True)):
        torch.library.opcheck(
            torch.ops.cuda_ext.all_levels_roi_align.default,
            (features, to_rois(boxes), scales, 7, 5, sampling_ratio, aligned),
            test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
        )
    empty = to_rois([torch.zeros(0, 4), torch.zeros(0, 4)])
    torch.library.opcheck(
        torch.ops.cuda_ext.all_levels_roi_align.default,
        (features, empty, scales, 7, 7, 2, False),
        test_utils=("test_schema", "test_faketensor"),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cpu_pools_in_float32(compiled_ops: None, dtype: torch.dtype) -> None:
    features = [f.requires_grad_() for f in pyramid(1, 4, 64, 64, seed=26, dtype=dtype)]
    boxes = [random_boxes(5, 64, 64, seed=27, dtype=dtype)]
    got = all_levels_roi_align(features, boxes, [(64, 64)], 7, 2)
    assert got.dtype == dtype
    expected = per_level([f.float() for f in features], [b.float() for b in boxes], 7, 2, False)
    torch.testing.assert_close(got, expected.to(dtype))
    got.sum().backward()
    assert features[0].grad is not None and features[0].grad.dtype == dtype


ONE = [torch.zeros(1, 4, 8, 8)]
BOX = [torch.zeros(1, 4)]


@pytest.mark.parametrize(
    ("features", "boxes", "shapes", "output_size", "message"),
    [
        ([], BOX, [(32, 32)], 7, "features must hold at least one level"),
        ([torch.zeros(1, 4, 8, 8)] * 9, BOX, [(32, 32)], 7, "at most 8 levels, got 9"),
        ([torch.zeros(1, 4, 8)], BOX, [(32, 32)], 7, r"features\[0\] must be \(B, C, H, W\)"),
        ([[0.0]], BOX, [(32, 32)], 7, r"features\[0\] must be a torch.Tensor, got list"),
        (
            [torch.zeros(1, 4, 8, 8), torch.zeros(1, 5, 4, 4)],
            BOX,
            [(32, 32)],
            7,
            r"features\[1\] must share batch, channels",
        ),
        (
            [torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 4, 4, dtype=torch.float64)],
            BOX,
            [(32, 32)],
            7,
            r"features\[1\] must share batch, channels, dtype",
        ),
        ([torch.zeros(1, 4, 8, 8, dtype=torch.int64)], BOX, [(32, 32)], 7, "floating point"),
        (ONE, [torch.zeros(1, 3)], [(32, 32)], 7, r"boxes\[0\] must be \(N, 4\)"),
        (ONE, [torch.zeros(1, 4)] * 2, [(32, 32)], 7, "boxes has 2 entries for a batch of 1"),
        (
            ONE,
            [torch.zeros(1, 4, dtype=torch.float64)],
            [(32, 32)],
            7,
            r"boxes\[0\] must match the features' dtype and device",
        ),
        (
            ONE,
            [torch.zeros(1, 4, device="meta")],
            [(32, 32)],
            7,
            r"boxes\[0\] must match the features' dtype and device .* on meta",
        ),
        (ONE, BOX, [], 7, "image_shapes has 0 entries for 1 images"),
        (ONE, BOX, [(32, -1)], 7, r"image_shapes\[0\] must be \(H, W\)"),
        (ONE, BOX, [(32, 32)], 0, "output_size must be positive"),
        (ONE, BOX, [(32, 32)], (7, 7, 7), r"output_size must be S or \(Sh, Sw\)"),
    ],
)
def test_rejects_bad_input(
    features: list[torch.Tensor],
    boxes: list[torch.Tensor],
    shapes: list[tuple[int, int]],
    output_size: int | tuple[int, ...],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        all_levels_roi_align(features, boxes, shapes, output_size, 2)


def test_rejects_a_fractional_sampling_ratio() -> None:
    with pytest.raises(ValueError, match=r"sampling_ratio must be an int, got 1\.5"):
        all_levels_roi_align(ONE, BOX, [(32, 32)], 7, 1.5)  # type: ignore[arg-type]


def test_the_kernel_names_what_is_wrong(compiled_ops: None) -> None:
    with pytest.raises(RuntimeError, match="all_levels_roi_align: rois must be \\(N, 5\\)"):
        torch.ops.cuda_ext.all_levels_roi_align(ONE, torch.zeros(1, 4), [0.25], 7, 7, 2, False)
    with pytest.raises(RuntimeError, match="one scale per level, got 2 scales for 1 levels"):
        torch.ops.cuda_ext.all_levels_roi_align(
            ONE, torch.zeros(1, 5), [0.25, 0.125], 7, 7, 2, False
        )
