"""The architecture registry.

A registered builder is a callable taking only keyword arguments: ``num_classes: int |
None`` (with the background; None: the architecture's own) and the architecture's settings,
each typed (a ``TypedDict`` unpacked as keyword arguments, or explicit keyword-only
parameters); an unknown keyword raises TypeError naming it. It returns the model
(``torch.nn.Module``, float32, on the CPU) carrying ``class_names``; :func:`build` then
loads ``weights`` (a path or a state dict in the format users already have) with the
architecture's loader, puts the model in eval mode and moves it to ``device``. Registering a
name twice is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

Builder = Callable[..., torch.nn.Module]
Loader = Callable[[torch.nn.Module, "str | Path | dict[str, Any]"], None]

_BUILDERS: dict[str, tuple[Builder, Loader | None]] = {}
_INPUT_SIDE: dict[str, int] = {}


def register(
    name: str, *, loader: Loader | None = None, input_side: int | None = None
) -> Callable[[Builder], Builder]:
    """Decorator adding an architecture builder (and its weights loader) under ``name``.

    ``input_side``: the shorter image side the model resizes its input to (at least); frames
    may be shrunk to it before they travel (ingest) without losing what the model sees.
    """

    def add(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"architecture {name!r} is already registered")
        _BUILDERS[name] = (builder, loader)
        if input_side is not None:
            _INPUT_SIDE[name] = input_side
        return builder

    return add


def input_side(name: str) -> int | None:
    """The shorter side frames for ``name`` can be shrunk to (None: send them as they are)."""
    if name not in _BUILDERS:
        known = ", ".join(list_models()) or "none registered"
        raise KeyError(f"unknown model {name!r}; known models: {known}")
    return _INPUT_SIDE.get(name)


def list_models() -> list[str]:
    """Names of the registered architectures, sorted."""
    return sorted(_BUILDERS)


def build(
    name: str,
    *,
    num_classes: int | None = None,
    weights: str | Path | dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    fuse: bool = False,
    channels_last: bool = False,
    **overrides: Any,
) -> torch.nn.Module:
    """Build the architecture ``name`` in eval mode (see the module docstring);
    ``overrides`` are its builder's settings.

    Two options every architecture takes, for inference: ``fuse=True`` folds batch norms
    into the convolutions after the weights are loaded (same outputs up to float rounding,
    no longer trainable), and ``channels_last=True`` stores the weights channels-last, which
    oneDNN on CPU and tensor cores on GPU run faster.
    """
    try:
        builder, loader = _BUILDERS[name]
    except KeyError:
        known = ", ".join(list_models()) or "none registered"
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None
    model = builder(num_classes=num_classes, **overrides)
    if weights is not None:
        if loader is None:
            raise ValueError(f"model {name!r} has no weights loader")
        loader(model, weights)
    model.eval()
    if fuse:
        from segcore.models.fuse import fuse_conv_bn

        fuse_conv_bn(model)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
