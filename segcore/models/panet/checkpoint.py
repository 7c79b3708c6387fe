"""Loading PANet weights: the official checkpoints by their own keys, and our own.

The official checkpoints (github.com/ShuLiu1993/PANet, the Detectron.pytorch layout) name
the modules of ``Generalized_RCNN``: ``Conv_Body`` (the ResNet ``conv_body.res1..res5``, the
FPN's ``conv_top``, ``topdown_lateral_modules``, ``posthoc_modules`` and the bottom-up
``panet_buttomup_conv{1,2}_modules``), ``RPN`` (``FPN_RPN_*``), ``Box_Head``/``Box_Outs``
and ``Mask_Head``/``Mask_Outs``. :func:`rename_official_keys` maps them onto our modules
(torchvision's names where the part is torchvision's). Two values change on the way:
the first convolution's input channels turn from BGR to RGB, and the backbone's affine
norms (weight and bias only) get the running mean 0 and variance 1 of a frozen norm.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from segcore.models.weights import load_strict, read_state_dict


def _fpn_inner(match: re.Match[str]) -> str:
    # topdown_lateral_modules.0 is C4's lateral; torchvision's inner_blocks run C2..C5.
    return f"backbone.fpn.inner_blocks.{2 - int(match[1])}.{match[2]}"


def _fpn_layer(match: re.Match[str]) -> str:
    # posthoc_modules.0 is P5's output conv; torchvision's layer_blocks run P2..P5.
    return f"backbone.fpn.layer_blocks.{3 - int(match[1])}.{match[2]}"


def _split(prefix: str) -> Callable[[re.Match[str]], str]:
    # Official (conv, GN, ReLU) triples in one Sequential -> one Conv2dNormActivation each.
    def rename(match: re.Match[str]) -> str:
        index = int(match[1])
        return f"{prefix}.{index // 3}.{index % 3}.{match[2]}"

    return rename


_Rename = str | Callable[[re.Match[str]], str]
_PATTERNS: list[tuple[str, _Rename]] = [
    (r"^Conv_Body\.conv_body\.res1\.(conv1|bn1)\.(.+)$", r"backbone.body.\1.\2"),
    (r"^Conv_Body\.conv_body\.res2\.(.+)$", r"backbone.body.layer1.\1"),
    (r"^Conv_Body\.conv_body\.res3\.(.+)$", r"backbone.body.layer2.\1"),
    (r"^Conv_Body\.conv_body\.res4\.(.+)$", r"backbone.body.layer3.\1"),
    (r"^Conv_Body\.conv_body\.res5\.(.+)$", r"backbone.body.layer4.\1"),
    (r"^Conv_Body\.conv_top\.(.+)$", r"backbone.fpn.inner_blocks.3.\1"),
    (r"^Conv_Body\.topdown_lateral_modules\.(\d+)\.conv_lateral\.(.+)$", _fpn_inner),
    (r"^Conv_Body\.posthoc_modules\.(\d+)\.(.+)$", _fpn_layer),
    (r"^Conv_Body\.panet_buttomup_conv1_modules\.(.+)$", r"backbone.bottom_up.down.\1"),
    (r"^Conv_Body\.panet_buttomup_conv2_modules\.(.+)$", r"backbone.bottom_up.fuse.\1"),
    (r"^RPN\.FPN_RPN_conv\.(.+)$", r"rpn.head.conv.0.0.\1"),
    (r"^RPN\.FPN_RPN_cls_score\.(.+)$", r"rpn.head.cls_logits.\1"),
    (r"^RPN\.FPN_RPN_bbox_pred\.(.+)$", r"rpn.head.bbox_pred.\1"),
    (r"^Box_Head\.conv1_head\.(.+)$", r"roi_heads.box_head.first.\1"),
    (r"^Box_Head\.convs\.(\d+)\.(.+)$", _split("roi_heads.box_head.convs")),
    (r"^Box_Head\.fc\.(.+)$", r"roi_heads.box_head.fc.\1"),
    (r"^Box_Outs\.(cls_score|bbox_pred)\.(.+)$", r"roi_heads.box_predictor.\1.\2"),
    (r"^Mask_Head\.mask_conv1\.(.+)$", r"roi_heads.mask_head.first.\1"),
    (r"^Mask_Head\.conv_fcn\.(\d+)\.(.+)$", _split("roi_heads.mask_head.convs")),
    (r"^Mask_Head\.mask_conv4\.(.+)$", r"roi_heads.mask_head.conv4.\1"),
    (r"^Mask_Head\.mask_conv4_fc\.(.+)$", r"roi_heads.mask_head.fc_conv4.\1"),
    (r"^Mask_Head\.mask_conv5_fc\.(.+)$", r"roi_heads.mask_head.fc_conv5.\1"),
    (r"^Mask_Head\.mask_fc\.0\.(.+)$", r"roi_heads.mask_head.fc.\1"),
    (r"^Mask_Head\.upconv\.(.+)$", r"roi_heads.mask_predictor.conv5_mask.\1"),
    (r"^Mask_Outs\.classify\.(.+)$", r"roi_heads.mask_predictor.mask_fcn_logits.\1"),
]
_RULES: list[tuple[re.Pattern[str], _Rename]] = [(re.compile(p), r) for p, r in _PATTERNS]

_OFFICIAL_ROOTS = ("Conv_Body.", "RPN.", "Box_Head.", "Box_Outs.", "Mask_Head.", "Mask_Outs.")
_FIRST_CONV = "backbone.body.conv1.weight"


def official_name(key: str) -> str | None:
    """Our name of the official key ``key`` (None: no rule covers it)."""
    for pattern, replacement in _RULES:
        match = pattern.match(key)
        if match:
            return replacement(match) if callable(replacement) else match.expand(replacement)
    return None


def is_official(state: dict[str, Tensor]) -> bool:
    """Whether ``state`` uses the official layout (its keys under ``Conv_Body.`` etc.)."""
    return any(key.startswith(_OFFICIAL_ROOTS) for key in state)


def rename_official_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The official checkpoint ``state`` under our names (a key no rule covers is kept as it
    is, so that loading names it as unknown); the first convolution turned to RGB input and
    the affine norms given the running statistics of an identity (mean 0, variance 1)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = official_name(key) or key
        if name in out:
            raise ValueError(f"official keys {key!r} and another both map to {name!r}")
        out[name] = value.flip(1) if name == _FIRST_CONV else value
    for name in list(out):
        if name.startswith("backbone.body.") and re.search(r"(bn\d|downsample\.1)\.weight$", name):
            stem = name.removesuffix("weight")
            channels = out[name].shape[0]
            out.setdefault(stem + "running_mean", torch.zeros(channels))
            out.setdefault(stem + "running_var", torch.ones(channels))
    return out


def official_loader(what: str) -> Callable[[nn.Module, str | Path | dict[str, Any]], None]:
    """A registry loader for PANet models: official checkpoints (renamed) or our own state
    dicts (float16 ones too), every unknown, missing or mis-shaped key named."""

    def load(model: nn.Module, weights: str | Path | dict[str, Any]) -> None:
        state = read_state_dict(weights)
        if is_official(state):
            state = rename_official_keys(state)
        load_strict(model, state, what=what)

    return load


__all__ = ["is_official", "official_loader", "official_name", "rename_official_keys"]
