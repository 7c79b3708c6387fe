"""The compiled ops of segstream: C++ CPU kernels and CUDA kernels.

``python -m cuda_ext.build`` (or ``segstream ops build``) compiles ``csrc/`` with
``torch.utils.cpp_extension`` into ``cuda_ext/_build/``. Nothing happens at import time;
the library is loaded on first use by :func:`available`. The Python fronts in ``segcore.ops``
ask :func:`supports` whether a tensor's device has a compiled kernel and fall back to their
PyTorch references when it has not.
Set ``SEGSTREAM_OPS_LIBRARY`` to load a library built elsewhere; set it to ``off`` to force
the references. ``SEGSTREAM_OPS_BUILD_DIR`` moves the build folder (and so the default library
path), for a second build beside the checkout's.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

LIBRARY_NAME = "segstream_ops"
BUILD_DIR = Path(
    os.environ.get("SEGSTREAM_OPS_BUILD_DIR") or Path(__file__).resolve().parent / "_build"
)
_ENV = "SEGSTREAM_OPS_LIBRARY"

_lock = threading.Lock()
_state: dict[str, object] = {}
_kernels: dict[str, bool] = {}  # dispatch key -> the loaded library has kernels for it

# The devices the library can carry kernels for, by their dispatch key.
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


def library_path() -> Path:
    """Where the compiled library is looked for."""
    override = os.environ.get(_ENV)
    if override and override != "off":
        return Path(override)
    return BUILD_DIR / f"{LIBRARY_NAME}.so"


def load() -> None:
    """Load the compiled library into ``torch.ops.cuda_ext``; raise if it cannot be."""
    import torch

    with _lock:
        if _state.get("loaded"):
            return
        path = library_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"compiled ops not built: {path} is missing; run `segstream ops build`"
            )
        torch.ops.load_library(str(path))
        from cuda_ext import _register

        _register.register()
        _state["loaded"] = True


def available() -> bool:
    """True when the compiled library is built and loaded (False, not an error, otherwise)."""
    if os.environ.get(_ENV) == "off":
        return False
    if "available" not in _state:
        try:
            load()
            _state["available"] = True
        except (OSError, RuntimeError) as exc:
            _state["available"] = False
            _state["error"] = str(exc)
    return bool(_state["available"])


def load_error() -> str | None:
    """Why :func:`available` said False, when it tried and failed."""
    error = _state.get("error")
    return None if error is None else str(error)


def supports(tensor: Tensor) -> bool:
    """True when the compiled library is loaded and has kernels for ``tensor``'s device.

    CPU tensors need the library; CUDA tensors need it built with nvcc; any other device
    (``meta``, ``mps``, ...) has no compiled kernels. Each op front calls its compiled kernel
    when this is True and its PyTorch reference otherwise. Reads no tensor data.
    """
    key = _DISPATCH_KEYS.get(tensor.device.type)
    return key is not None and _has_kernels(key)


def has_cuda_kernels() -> bool:
    """True when the loaded library carries CUDA kernels (built with nvcc)."""
    return _has_kernels("CUDA")


def _has_kernels(dispatch_key: str) -> bool:
    if not available():
        return False
    if dispatch_key not in _kernels:
        import torch

        # Every op of the library is built for the same backends: one stands for all.
        _kernels[dispatch_key] = bool(
            torch._C._dispatch_has_kernel_for_dispatch_key("cuda_ext::paste_masks", dispatch_key)
        )
    return _kernels[dispatch_key]
