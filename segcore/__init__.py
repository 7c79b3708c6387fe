"""segcore: the model library of segstream (pure PyTorch, no service dependencies)."""

from segcore import models as _models  # registers the architectures
from segcore.registry import build, input_side, list_models, register

__all__ = ["build", "input_side", "list_models", "register"]
del _models
