"""The served build (segcore.served) and the registry's serving metadata (segcore.registry)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import segcore
from segcore import registry
from segcore.models.frames import infer_frames
from segcore.registry import DEFAULT_SERVED, Served, register, served_config
from segcore.served import CompiledPart, compile_parts, served_build

DEMO = "yolact_r18_demo"
# The demo's prototype net: small enough to compile in seconds.
SMALL = Served(compile=("proto_net",), warm_sizes=((48, 64),))


def _frames(count: int, height: int = 48, width: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (count, height, width, 3), generator=generator, dtype=torch.uint8)


@pytest.fixture(scope="module")
def compiled() -> nn.Module:
    return segcore.build_served(DEMO, config=SMALL)


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names registered by a test are gone after it (other tests list every model)."""
    for table in ("_BUILDERS", "_INPUT_SIDE", "_SERVED"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def test_a_warmed_part_runs_its_graph_frame_by_frame_with_the_eager_outputs(
    compiled: nn.Module,
) -> None:
    part = compiled.proto_net
    assert isinstance(part, CompiledPart) and part.failed is None
    assert len(part.warmed) == 1 and float(getattr(compiled, "warm_up_seconds", 0)) > 0
    eager = segcore.build_served(DEMO, config=Served())
    graphs = _unique_graphs()
    frames = _frames(3)  # a batch of 3: the batch-1 graph, three times
    ours, theirs = infer_frames(compiled, frames), infer_frames(eager, frames)
    assert _unique_graphs() == graphs  # no compilation while serving
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(a["masks"], b["masks"], atol=1e-4, rtol=1e-4)


def test_a_compiled_part_runs_eagerly_where_it_was_not_warmed(compiled: nn.Module) -> None:
    part = compiled.proto_net
    assert isinstance(part, CompiledPart)
    calls: list[int] = []
    hook = part.module.register_forward_hook(lambda *_: calls.append(1))
    try:
        features = torch.rand(2, 96, 16, 16)  # a shape warm-up never gave it
        graphs = _unique_graphs()
        with torch.inference_mode():
            part(features)
        assert calls == [1] and _unique_graphs() == graphs
        calls.clear()
        part(features.contiguous(memory_format=torch.channels_last))  # autograd on: eager
        assert calls == [1]
    finally:
        hook.remove()


def test_served_build_reads_back_the_build_a_model_has(compiled: nn.Module) -> None:
    assert served_build(compiled) == SMALL
    plain = segcore.build(DEMO)
    seen = served_build(plain)
    assert not seen.fuse and not seen.channels_last and seen.compile == ()
    assert served_build(segcore.build(DEMO, fuse=True, channels_last=True)) == Served()


def test_every_architecture_names_a_served_build_for_cpu_and_cuda() -> None:
    for name in segcore.list_models():
        for device in ("cpu", "cuda"):
            config = served_config(name, device)
            assert isinstance(config, Served)
            assert not config.compile or config.warm_sizes, name
    assert served_config(DEMO, "cuda:1") == served_config(DEMO, "cuda")


@pytest.mark.usefixtures("scratch_registry")
def test_an_architecture_without_a_served_build_gets_the_default() -> None:
    @register("served_test_plain_arch")
    def plain(*, num_classes: int | None = None) -> nn.Module:
        raise NotImplementedError

    assert served_config("served_test_plain_arch", "cpu") == DEFAULT_SERVED["cpu"]
    assert served_config("served_test_plain_arch", "cuda") == DEFAULT_SERVED["cuda"]


@pytest.mark.usefixtures("scratch_registry")
def test_bad_serving_metadata_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="names no warm_sizes"):
        register("served_test_bad", served={"cpu": Served(compile=("backbone",))})
    with pytest.raises(TypeError, match=r"served\['cpu'\] must be a Served"):
        register("served_test_bad", served={"cpu": {"fuse": True}})  # type: ignore[dict-item]
    with pytest.raises(RuntimeError, match="gpu"):
        register("served_test_bad", served={"gpu": Served()})
    with pytest.raises(ValueError, match="warm_sizes"):
        Served(warm_sizes=((0, 640),))
    with pytest.raises(TypeError, match="tuple of submodule paths"):
        Served(compile="backbone")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no_such_model"):
        served_config("no_such_model")
    assert "served_test_bad" not in segcore.list_models()


def test_compile_parts_names_an_unknown_path() -> None:
    model = segcore.build(DEMO)
    with pytest.raises(AttributeError, match=r"'fpn\.nothing'"):
        compile_parts(model, ["fpn.nothing"])
