"""The backbone registry.

A registered builder is a callable taking only keyword arguments, each typed and with a
default (an unknown keyword raises TypeError naming it), and returning an ``nn.Module``
(CPU, float32, train mode) that maps a ``(B, 3, H, W)`` float batch to a list of feature
maps, finest first, and whose ``channels: list[int]`` gives each map's channel count.
Registering a name twice is an error. The builders register when their module is imported:
``import segcore.models`` imports them all (YOLACT's ResNets in
``segcore.models.yolact.backbone``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

BackboneBuilder = Callable[..., nn.Module]

_BACKBONES: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator adding a backbone builder under ``name`` (see the module docstring)."""

    def add(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = builder
        return builder

    return add


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(_BACKBONES)


def build_backbone(name: str, **settings: Any) -> nn.Module:
    """The backbone ``name`` built with ``settings`` (its builder's keyword arguments)."""
    try:
        builder = _BACKBONES[name]
    except KeyError:
        known = ", ".join(list_backbones()) or "none registered"
        raise KeyError(f"unknown backbone {name!r}; known backbones: {known}") from None
    return builder(**settings)
