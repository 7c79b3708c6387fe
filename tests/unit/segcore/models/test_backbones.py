"""The backbone registry and YOLACT's registered ResNets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segcore.models.backbones import build_backbone, list_backbones, register_backbone


def test_yolacts_resnets_are_registered() -> None:
    assert {"resnet18", "resnet34", "resnet50", "resnet101"} <= set(list_backbones())


def test_a_duplicate_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'resnet50' is already registered"):
        register_backbone("resnet50")(lambda: nn.Identity())


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown backbone 'vgg16'.*resnet101"):
        build_backbone("vgg16")


def test_an_unknown_setting_is_named() -> None:
    with pytest.raises(TypeError, match="depht"):
        build_backbone("resnet18", depht=3)


@pytest.mark.parametrize(
    ("name", "width", "channels"),
    [("resnet18", 16, [16, 32, 64, 128]), ("resnet50", 8, [32, 64, 128, 256])],
)
def test_builds_return_the_stages_with_their_channels(
    name: str, width: int, channels: list[int]
) -> None:
    backbone = build_backbone(name, width=width)
    assert backbone.channels == channels
    with torch.inference_mode():
        outs = backbone.eval()(torch.rand(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == channels
    assert [o.shape[-2:] for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_deformable_blocks_where_the_settings_put_them() -> None:
    backbone = build_backbone("resnet50", width=8, dcn_layers=(0, 4, 6, 3), dcn_interval=2)
    state = backbone.state_dict()
    dcn = sorted(
        k.removesuffix(".conv2.conv_offset_mask.weight")
        for k in state
        if k.endswith("offset_mask.weight")
    )
    # The last dcn_layers[i] blocks of stage i, every dcn_interval-th of them.
    assert dcn == [
        "layers.1.0",
        "layers.1.2",
        "layers.2.0",
        "layers.2.2",
        "layers.2.4",
        "layers.3.0",
        "layers.3.2",
    ]
