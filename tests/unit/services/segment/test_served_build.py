"""The segment worker and ``segstream run`` serve the build the registry names for the
architecture and device (``segcore.registry.Served``), warmed up before they take frames."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import nn

import segcore
from segcore import served as served_module
from segcore.models.weights import WeightsError
from segcore.registry import served_config
from segcore.served import CompiledPart, served_build
from services.pipeline import run as run_module
from services.segment import infer as infer_module
from services.segment import worker as worker_module


@pytest.fixture
def warm_ups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[nn.Module, tuple[Any, ...]]]:
    """Warm-ups recorded instead of run (a compilation takes minutes on a small machine;
    tests/unit/segcore/test_serving.py and tests/integration/test_served.py run real ones)."""
    calls: list[tuple[nn.Module, tuple[Any, ...]]] = []

    def record(model: nn.Module, sizes: Any) -> float:
        calls.append((model, tuple(sizes)))
        return 0.0

    monkeypatch.setattr(served_module, "warm_up", record)
    return calls


@pytest.mark.parametrize("name", segcore.list_models())
def test_the_worker_builds_what_the_registry_names(
    name: str, warm_ups: list[tuple[nn.Module, tuple[Any, ...]]]
) -> None:
    try:
        model = infer_module.load_model(name, "cpu")
    except WeightsError as exc:  # a demo whose weights are not trained yet
        pytest.skip(str(exc))
    config = served_config(name, "cpu")
    assert served_build(model) == config
    parts = {p for p, m in model.named_modules() if isinstance(m, CompiledPart)}
    assert parts == set(config.compile)
    if config.warm_sizes:
        assert warm_ups == [(model, config.warm_sizes)]
    else:
        assert warm_ups == []
    if config.threads is not None:
        assert torch.get_num_threads() == config.threads


def test_a_build_other_than_the_registrys_is_told_apart() -> None:
    """What the worker used to serve (folded norms only) reads back as a different build."""
    for name in ("maskrcnn_r50_fpn", "yolact_r50"):
        config = served_config(name, "cpu")
        assert served_build(segcore.build(name, fuse=True)) != config
        unwarmed = segcore.build_served(name, warm=False)
        assert served_build(unwarmed) != config or not config.warm_sizes


def test_the_worker_and_segstream_run_build_through_load_model() -> None:
    """Both build their model with the one function the test above checks."""
    worker_source = inspect.getsource(worker_module.SegmentWorker.__init__)
    run_source = inspect.getsource(run_module.run)
    assert "load_model(model_name, self.options.device)" in worker_source
    assert 'load_model(options.model, "cpu")' in run_source
    assert "segcore.build(" not in worker_source + run_source
