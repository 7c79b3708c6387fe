"""Loading YOLACT weights: the official checkpoints by their own keys, and segstream's own.

The official loader's clean-up is reproduced: stray ``backbone.layer*`` keys (not
``backbone.layers``) and ``fpn.downsample_layers.K`` beyond the configured count are
dropped. Every other key must match the model exactly (``load_strict``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from segcore.models.weights import load_strict, read_state_dict
from segcore.models.yolact.model import Yolact


def rename_official_keys(num_downsample: int) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """The official loader's clean-up for a model with ``num_downsample`` extra FPN levels."""

    def rename(state: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {}
        for key, value in state.items():
            if key.startswith("backbone.layer") and not key.startswith("backbone.layers"):
                continue
            if (
                key.startswith("fpn.downsample_layers.")
                and int(key.split(".")[2]) >= num_downsample
            ):
                continue
            out[key] = value
        return out

    return rename


def load_yolact(model: Yolact, weights: str | Path | dict[str, Any], *, what: str) -> None:
    """Load ``weights`` (a path or a state dict) into ``model``, naming every unknown, missing
    and mis-shaped key (``WeightsError``); ``what`` names the model in messages."""
    rename = rename_official_keys(model.config.num_downsample)
    load_strict(model, read_state_dict(weights), what=what, rename=rename)


def yolact_loader(name: str) -> Callable[[nn.Module, str | Path | dict[str, Any]], None]:
    """The registry's weights loader for the YOLACT architecture ``name``."""

    def load(model: nn.Module, weights: str | Path | dict[str, Any]) -> None:
        if not isinstance(model, Yolact):
            raise TypeError(f"{name}: cannot load into a {type(model).__name__}")
        load_yolact(model, weights, what=name)

    return load
