"""Argument checks shared by the op fronts: each raises ValueError naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def tensor(op: str, name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def shape(op: str, name: str, value: Tensor, expected: str, ok: bool) -> None:
    if not ok:
        raise ValueError(f"{op}: {name} must be {expected}, got shape {tuple(value.shape)}")


def dtype(op: str, name: str, value: Tensor, allowed: Sequence[torch.dtype]) -> None:
    if value.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise ValueError(f"{op}: {name} must be of dtype {names}, got {value.dtype}")


def floating(op: str, name: str, value: Tensor) -> None:
    if not value.is_floating_point():
        raise ValueError(f"{op}: {name} must be floating point, got {value.dtype}")


def same_device(op: str, **tensors: Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"{op}: tensors must share a device, got {where}")


def image_shape(op: str, name: str, value: Sequence[int]) -> tuple[int, int]:
    if len(value) != 2 or any(int(v) != v or v < 0 for v in value):
        raise ValueError(f"{op}: {name} must be (H, W) of non-negative ints, got {value}")
    return int(value[0]), int(value[1])
