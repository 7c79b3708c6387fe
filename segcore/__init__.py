"""segcore: the model library of segstream (pure PyTorch, no service dependencies)."""

from segcore import models as _models  # registers the architectures
from segcore.registry import build, list_models, register

__all__ = ["build", "list_models", "register"]
del _models
