"""Loading the weights users already have, with every unknown or missing key named."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class WeightsError(ValueError):
    """A weights file that does not fit the model: unreadable, or keys/shapes that differ."""


def read_state_dict(weights: str | Path | Mapping[str, Any]) -> dict[str, Tensor]:
    """A state dict from a path or a mapping; checkpoints holding a "model" entry are unwrapped."""
    if isinstance(weights, str | Path):
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    else:
        loaded = weights
    if isinstance(loaded, Mapping) and "model" in loaded and isinstance(loaded["model"], Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"weights must be a state dict, got {type(loaded).__name__}")
    state = dict(loaded)
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise WeightsError(f"weights entry {key!r} is a {type(value).__name__}, not a tensor")
    return state


def load_strict(
    model: nn.Module,
    state: Mapping[str, Tensor],
    *,
    what: str,
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> None:
    """Load ``state`` into ``model``, raising WeightsError naming unknown, missing and
    mis-shaped keys (never ignoring any)."""
    renamed = rename(dict(state)) if rename is not None else dict(state)
    expected = model.state_dict()
    # Files saved before batch norms counted their batches lack the counter; PyTorch fills
    # it in on load, and so does this.
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in renamed:
            renamed[key] = value
    unknown = sorted(set(renamed) - set(expected))
    missing = sorted(set(expected) - set(renamed))
    shapes = sorted(
        f"{k}: file {tuple(renamed[k].shape)}, model {tuple(expected[k].shape)}"
        for k in set(renamed) & set(expected)
        if renamed[k].shape != expected[k].shape
    )
    problems = []
    if unknown:
        problems.append(f"unknown keys ({len(unknown)}): {', '.join(unknown[:20])}")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes[:10])}")
    if problems:
        raise WeightsError(f"{what} weights do not fit the model: " + " | ".join(problems))
    model.load_state_dict(renamed, strict=True)
