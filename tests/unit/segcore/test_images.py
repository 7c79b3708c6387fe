"""to_float_chw: the one conversion of a decoded (H, W, 3) uint8 frame to a model's input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from segcore.images import to_float_chw


def _frame(seed: int = 0, height: int = 5, width: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_layout_dtype_and_scale() -> None:
    rgb = _frame()
    rgb[0, 0] = (0, 128, 255)
    image = to_float_chw(rgb)
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    assert image[:, 0, 0].tolist() == pytest.approx([0.0, 128 / 255, 1.0])
    for c in range(3):
        np.testing.assert_array_equal(image[c].numpy(), rgb[:, :, c].astype(np.float32) / 255)


def test_device_argument() -> None:
    assert to_float_chw(_frame(), "meta").device.type == "meta"
    assert to_float_chw(_frame(), torch.device("cpu")).device.type == "cpu"


def test_flipped_and_read_only_frames() -> None:
    """A flipped view (negative strides) and a read-only array (``np.asarray`` of a PIL image)
    convert like the plain frame, without torch's warning about non-writable arrays."""
    rgb = _frame(1)
    read_only = rgb.copy()
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(to_float_chw(rgb[:, ::-1]), to_float_chw(rgb).flip(2))
        torch.testing.assert_close(to_float_chw(read_only), to_float_chw(rgb))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)],
)
def test_rejects_other_frames(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"rgb must be \(H, W, 3\) uint8"):
        to_float_chw(bad)
