"""Fold batch normalisation into the convolution before it, for inference.

A frozen (or eval-mode) BatchNorm after a convolution is an affine map per channel; folding
it into the convolution's weight and bias removes a full pass over every feature map. The
outputs change only by float rounding.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _fold(conv: nn.Conv2d, bn: nn.Module) -> None:
    eps = float(bn.eps)  # type: ignore[arg-type]
    weight_bn: torch.Tensor = bn.weight  # type: ignore[assignment]
    bias_bn: torch.Tensor = bn.bias  # type: ignore[assignment]
    mean: torch.Tensor = bn.running_mean  # type: ignore[assignment]
    var: torch.Tensor = bn.running_var  # type: ignore[assignment]
    scale = weight_bn.detach() * torch.rsqrt(var.detach() + eps)
    shift = bias_bn.detach() - mean.detach() * scale
    weight = conv.weight.detach() * scale.reshape(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias.detach() * scale + shift
    conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a Conv2d; return how many were folded.

    Recognised pairs: adjacent entries of an ``nn.Sequential``, and ResNet's
    ``conv{1,2,3}``/``bn{1,2,3}`` attributes. The model must be in eval mode.
    """
    if model.training:
        raise ValueError("fuse_conv_bn: call model.eval() first; training needs the norms")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in pairwise(names):
                conv, bn = module._modules[first], module._modules[second]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, _NORMS):
                    _fold(conv, bn)
                    module._modules[second] = nn.Identity()
                    folded += 1
        for conv_name, bn_name in _PAIRS:
            conv_attr = getattr(module, conv_name, None)
            bn_attr = getattr(module, bn_name, None)
            if isinstance(conv_attr, nn.Conv2d) and isinstance(bn_attr, _NORMS):
                _fold(conv_attr, bn_attr)
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded
