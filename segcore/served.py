"""The served build: what the segment worker and ``segstream run`` run.

``build_served(name, device=..., weights=...)`` builds the architecture as its registration
says for the device type (``segcore.registry.Served``: folded norms, channels-last weights,
compiled parts, threads), then warms it up: every ``warm_sizes`` frame goes once through
the serving entry (``segcore.models.frames.infer_frames``), which compiles the parts'
graphs for the shapes those frames give. The worker does this before it joins its consumer
group, so no frame waits for a compilation.

A compiled part (:class:`CompiledPart`) holds the eager submodule and its
``torch.compile(dynamic=False)`` graph. It runs the graph only for the input shapes it was
warmed with, one frame at a time (a batch of B frames runs the batch-1 graph B times and
its outputs are concatenated along dimension 0: one graph per frame shape serves every
batch size, where batch-shaped graphs would need one compilation per batch size), and
eagerly for anything else: a shape never warmed, autograd enabled (the graphs are for
inference), or a compilation that failed at warm-up (logged). With Inductor's ``freezing``
the graph holds its own (prepacked) copy of the weights, taken at warm-up.

:func:`served_build` reads back the build a model actually has (what a test compares with
the registry's ``Served``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from segcore.registry import Served, build, served_config

log = logging.getLogger("segstream.served")

# Per-frame shape of a part's inputs: (shape, stride, dtype, device) of each tensor, batch
# dimension left out.
ShapeKey = tuple[tuple[tuple[int, ...], tuple[int, ...], torch.dtype, str], ...]


def _tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


def _frame(value: Any, index: int) -> Any:
    """``value`` with every tensor cut to frame ``index`` of its batch (dimension 0 kept)."""
    if isinstance(value, Tensor):
        return value[index : index + 1]
    if isinstance(value, dict):
        return type(value)((k, _frame(v, index)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_frame(v, index) for v in value)
    return value


def _join(outputs: list[Any]) -> Any:
    """Per-frame outputs concatenated along dimension 0, keeping their structure."""
    first = outputs[0]
    if isinstance(first, Tensor):
        return first if len(outputs) == 1 else torch.cat(outputs)
    if isinstance(first, dict):
        return type(first)((k, _join([o[k] for o in outputs])) for k in first)
    if isinstance(first, list | tuple):
        return type(first)(_join(list(parts)) for parts in zip(*outputs, strict=True))
    return first


class CompiledPart(nn.Module):
    """A submodule run by its Inductor graph for warmed input shapes, frame by frame, and
    eagerly otherwise (see the module docstring). ``module`` is the eager submodule;
    ``warmed`` the per-frame input shapes the graph serves."""

    def __init__(self, module: nn.Module, mode: str | None = None, freezing: bool = True) -> None:
        super().__init__()
        self.module = module
        self.mode = mode
        self.freezing = freezing
        self.warmed: set[ShapeKey] = set()
        self.failed: str | None = None
        self.warming = False
        # Not a submodule: the graph shares the eager module's parameters (state_dict and
        # parameters() list them once, under ``module``).
        self._graph: list[Any] = [torch.compile(module, dynamic=False, mode=mode)]

    def key(self, args: tuple[Any, ...]) -> ShapeKey | None:
        """The per-frame shape key of ``args``, None when they hold no batch to split."""
        tensors = list(_tensors(args))
        if not tensors or len({t.shape[0] if t.dim() else -1 for t in tensors}) != 1:
            return None
        if tensors[0].dim() == 0 or tensors[0].shape[0] == 0:
            return None
        return tuple(
            (tuple(t.shape[1:]), tuple(t.stride()[1:]), t.dtype, str(t.device)) for t in tensors
        )

    def forward(self, *args: Any) -> Any:
        key = self.key(args) if self.failed is None and not torch.is_grad_enabled() else None
        if key is None or not (self.warming or key in self.warmed):
            return self.module(*args)
        graph = self._graph[0]
        batch = next(_tensors(args)).shape[0]
        if self.warming and key not in self.warmed:
            import torch._inductor.config as inductor

            try:
                with inductor.patch(freezing=self.freezing):
                    first = graph(*_frame(args, 0))
            except Exception as exc:  # compiler missing or a graph Inductor cannot take
                self.failed = f"{type(exc).__name__}: {exc}"
                log.warning("compilation failed, the part runs eagerly: %s", self.failed)
                return self.module(*args)
            self.warmed.add(key)
            outputs = [first, *(graph(*_frame(args, i)) for i in range(1, batch))]
        else:
            outputs = [graph(*_frame(args, i)) for i in range(batch)]
        return _join(outputs)


def compile_parts(
    model: nn.Module, paths: Iterable[str], mode: str | None = None, freezing: bool = True
) -> list[CompiledPart]:
    """Replace each submodule of ``model`` at the dotted ``paths`` by a :class:`CompiledPart`
    (in place); an unknown path raises AttributeError naming it. Returns the parts."""
    parts = []
    for path in paths:
        parent_path, _, leaf = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        current = getattr(parent, leaf, None)
        if not isinstance(current, nn.Module):
            raise AttributeError(f"{type(model).__name__} has no submodule {path!r} to compile")
        part = (
            current if isinstance(current, CompiledPart) else CompiledPart(current, mode, freezing)
        )
        setattr(parent, leaf, part)
        parts.append(part)
    return parts


def warm_up(model: nn.Module, sizes: Iterable[tuple[int, int]]) -> float:
    """Run one frame of each (height, width) in ``sizes`` through the serving entry, the
    compiled parts compiling their graphs for the shapes it gives; returns the seconds it
    took. Frames are uint8 noise on the model's device."""
    from segcore.models.frames import infer_frames

    parts = [m for m in model.modules() if isinstance(m, CompiledPart)]
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for part in parts:
        part.warming = True
    try:
        for height, width in sizes:
            frame = torch.randint(0, 256, (1, height, width, 3), generator=generator)
            infer_frames(model, frame.to(torch.uint8).to(device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
    finally:
        for part in parts:
            part.warming = False
    return time.perf_counter() - started


def build_served(
    name: str,
    *,
    device: str | torch.device = "cpu",
    weights: str | Path | dict[str, Any] | None = None,
    num_classes: int | None = None,
    config: Served | None = None,
    warm: bool = True,
    **overrides: Any,
) -> nn.Module:
    """``name`` built as served on ``device`` (``config``: the registry's
    ``served_config(name, device)`` unless given), warmed up unless ``warm=False`` (then
    compiled parts run eagerly until :func:`warm_up`). ``weights``, ``num_classes`` and
    ``overrides`` as for ``segcore.build``. The model carries ``served`` (the config) and
    ``warm_up_seconds``."""
    config = config or served_config(name, device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    model = build(
        name,
        num_classes=num_classes,
        weights=weights,
        device=device,
        fuse=config.fuse,
        channels_last=config.channels_last,
        **overrides,
    )
    compile_parts(model, config.compile, config.compile_mode, config.freezing)
    warmed = tuple(config.warm_sizes) if warm else ()
    seconds = warm_up(model, warmed) if warmed else 0.0
    # Plain attributes (nn.Module's __setattr__ takes tensors and modules).
    object.__setattr__(model, "served", config)
    object.__setattr__(model, "warm_up_seconds", seconds)
    object.__setattr__(model, "warmed_sizes", warmed)
    log.info(
        "model built as served",
        extra={
            "model": name,
            "device": str(device),
            "served": str(served_build(model)),
            "warm_up_s": round(seconds, 2),
        },
    )
    return model


_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm2d,)
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _unfolded_norms(model: nn.Module) -> int:
    """Batch norms right after a convolution (the pairs ``fuse_conv_bn`` folds)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    norms = (*_NORMS, FrozenBatchNorm2d)
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for first, second in pairwise(list(module._modules.values())):
                count += isinstance(first, nn.Conv2d) and isinstance(second, norms)
        for conv, bn in _PAIRS:
            pair = (getattr(module, conv, None), getattr(module, bn, None))
            count += isinstance(pair[0], nn.Conv2d) and isinstance(pair[1], norms)
    return count


def served_build(model: nn.Module) -> Served:
    """The build ``model`` has, read from the model itself: ``fuse`` (no batch norm left
    after a convolution), ``channels_last`` (every convolution weight with a kernel wider
    than 1 is channels-last), the compiled parts' paths, mode and freezing, the sizes it was
    warmed with and ``threads`` (torch's, where the model's config names a count)."""
    convs = [
        m.weight
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.weight.dim() == 4 and m.weight.shape[-1] > 1
    ]
    parts = [(p, m) for p, m in model.named_modules() if isinstance(m, CompiledPart)]
    config: Served | None = getattr(model, "served", None)
    return replace(
        Served(),
        fuse=_unfolded_norms(model) == 0,
        channels_last=bool(convs)
        and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs),
        compile=tuple(p for p, _ in parts),
        compile_mode=parts[0][1].mode if parts else None,
        freezing=parts[0][1].freezing if parts else Served().freezing,
        warm_sizes=tuple(getattr(model, "warmed_sizes", ())),
        threads=torch.get_num_threads() if config and config.threads else None,
        measured=config.measured if config else "",
    )
