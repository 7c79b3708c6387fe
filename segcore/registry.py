"""The architecture registry, and how each architecture is served.

A registered builder is a callable taking only keyword arguments: ``num_classes: int |
None`` (with the background; None: the architecture's own) and the architecture's settings,
each typed (a ``TypedDict`` unpacked as keyword arguments, or explicit keyword-only
parameters); an unknown keyword raises TypeError naming it. It returns the model
(``torch.nn.Module``, float32, on the CPU) carrying ``class_names``; :func:`build` then
loads ``weights`` (a path or a state dict in the format users already have) with the
architecture's loader, puts the model in eval mode and moves it to ``device``. Registering a
name twice is an error.

Serving (what the segment worker and ``segstream run`` build, ``segcore.build_served``):
each architecture states, per device type, the build that runs fastest with the same
outputs, as a :class:`Served` in its registration::

    @register(
        "my_arch",
        loader=...,
        input_side=800,
        served={
            "cpu": Served(compile=("backbone",), warm_sizes=((480, 640), (1080, 1920))),
            "cuda": Served(channels_last=True),
        },
    )
    def my_arch(*, num_classes=None, **settings): ...

A device type the architecture does not name gets :data:`DEFAULT_SERVED` (folded norms,
channels-last weights on the CPU, nothing compiled). ``compile`` lists dotted submodule
paths that run as Inductor-compiled graphs (``segcore.served``); state them only where
``bench/models.py`` shows the gain with outputs within its tolerance, and record that
measurement in ``measured``. The serving entry always runs in inference mode.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

Builder = Callable[..., torch.nn.Module]
Loader = Callable[[torch.nn.Module, "str | Path | dict[str, Any]"], None]


@dataclass(frozen=True)
class Served:
    """The served build of one architecture on one device type.

    - ``fuse``: fold batch norms into the convolutions (``build(fuse=True)``).
    - ``channels_last``: weights (and so activations) channels-last (oneDNN's fast layout on
      CPU, tensor cores' on GPU).
    - ``compile``: dotted paths of submodules (``"backbone"``, ``"rpn.head"``) run as
      ``torch.compile`` graphs (Inductor, ``dynamic=False``) for the input shapes warmed
      before serving; a batch is split into single frames for them, so one graph per frame
      shape serves every batch size, and a shape never warmed runs eagerly rather than
      waiting for a compilation.
    - ``compile_mode``: ``torch.compile``'s ``mode`` (None: the default).
    - ``freezing``: Inductor folds the weights into its graphs as constants (prepacked
      oneDNN weights, fused convolution epilogues); inference only.
    - ``warm_sizes``: (height, width) frame sizes run once before serving (the camera shapes
      the service sees after ingest shrinks frames to ``input_side``: 4:3 and 16:9).
    - ``threads``: intra-op threads (``torch.set_num_threads``); None leaves torch's default,
      the CPUs the process may use.
    - ``measured``: where the choice was measured (a benchmark and its result).
    """

    fuse: bool = True
    channels_last: bool = True
    compile: tuple[str, ...] = ()
    compile_mode: str | None = None
    freezing: bool = True
    warm_sizes: tuple[tuple[int, int], ...] = ()
    threads: int | None = None
    measured: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.compile, str):
            raise TypeError(f"Served.compile is a tuple of submodule paths, got {self.compile!r}")
        for size in self.warm_sizes:
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"Served.warm_sizes: (height, width) >= 1 each, got {size!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"Served.threads must be >= 1 or None, got {self.threads}")


#: The served build of a device type an architecture does not name: folded norms, on the
#: CPU channels-last (oneDNN's layout; 1.3x to 1.5x on the registered models), nothing
#: compiled.
DEFAULT_SERVED: dict[str, Served] = {
    "cpu": Served(),
    "cuda": Served(channels_last=False),
}
_FALLBACK = Served(channels_last=False)

_BUILDERS: dict[str, tuple[Builder, Loader | None]] = {}
_INPUT_SIDE: dict[str, int] = {}
_SERVED: dict[str, dict[str, Served]] = {}


def register(
    name: str,
    *,
    loader: Loader | None = None,
    input_side: int | None = None,
    served: Mapping[str, Served] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator adding an architecture builder (and its weights loader) under ``name``.

    ``input_side``: the shorter image side the model resizes its input to (at least); frames
    may be shrunk to it before they travel (ingest) without losing what the model sees.
    ``served``: the served build per device type (``"cpu"``, ``"cuda"``; see the module
    docstring).
    """
    for kind, config in (served or {}).items():
        if not isinstance(config, Served):
            raise TypeError(f"{name}: served[{kind!r}] must be a Served, got {config!r}")
        torch.device(kind)  # an unknown device type raises here, naming it
        if config.compile and not config.warm_sizes:
            raise ValueError(
                f"{name}: served[{kind!r}] compiles {config.compile} but names no warm_sizes "
                "(the frame sizes compiled before serving)"
            )

    def add(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"architecture {name!r} is already registered")
        _BUILDERS[name] = (builder, loader)
        if input_side is not None:
            _INPUT_SIDE[name] = input_side
        _SERVED[name] = dict(served or {})
        return builder

    return add


def _known(name: str) -> None:
    if name not in _BUILDERS:
        known = ", ".join(list_models()) or "none registered"
        raise KeyError(f"unknown model {name!r}; known models: {known}")


def input_side(name: str) -> int | None:
    """The shorter side frames for ``name`` can be shrunk to (None: send them as they are)."""
    _known(name)
    return _INPUT_SIDE.get(name)


def served_config(name: str, device: str | torch.device = "cpu") -> Served:
    """The build ``name`` is served in on ``device`` (its type decides): what the
    architecture registered for it, else :data:`DEFAULT_SERVED`."""
    _known(name)
    kind = torch.device(device).type
    return _SERVED[name].get(kind) or DEFAULT_SERVED.get(kind, _FALLBACK)


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
    oneDNN on CPU and tensor cores on GPU run faster. The served build (compiled parts,
    warm-up) is ``segcore.build_served``.
    """
    try:
        builder, loader = _BUILDERS[name]
    except KeyError:
        _known(name)
        raise
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
