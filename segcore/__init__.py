"""segcore: the model library of segstream (pure PyTorch, no service dependencies)."""

from segcore import models as _models  # registers the architectures
from segcore.registry import Served, build, input_side, list_models, register, served_config
from segcore.served import build_served, served_build

__all__ = [
    "Served",
    "build",
    "build_served",
    "input_side",
    "list_models",
    "register",
    "served_build",
    "served_config",
]
del _models
