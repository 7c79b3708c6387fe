"""No import cycle among segcore's modules.

The graph is read from the source with ``ast``: every ``import`` statement counts, at module
level, inside functions and under ``TYPE_CHECKING`` alike (a cycle hidden in a function is
still a cycle). ``import a.b`` and ``from a import b`` (b a module) point at ``a.b``;
``from a import name`` points at ``a``. Parent packages, which Python imports before their
children, are not edges of their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module of ``package`` under ``root``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (see the module docstring)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]  # an attribute of a module: its module
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_segcore_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, "segcore")
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg import model\n")
    (pkg / "model.py").write_text("def forward():\n    from pkg.loss import losses\n")
    (pkg / "loss.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.model import Model\n"
    )
    (pkg / "box.py").write_text("from . import loss\nfrom .model import forward\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {
        "pkg": {"pkg.model"},
        "pkg.model": {"pkg.loss"},
        "pkg.loss": {"pkg.model"},
        "pkg.box": {"pkg.loss", "pkg.model"},
    }
    assert find_cycle(graph) == ["pkg.model", "pkg.loss", "pkg.model"]


def test_the_yolact_model_imports_its_loss_and_not_the_reverse() -> None:
    graph = import_graph(ROOT, "segcore")
    assert "segcore.models.yolact.loss" in graph["segcore.models.yolact.model"]
    assert "segcore.models.yolact.model" not in graph["segcore.models.yolact.loss"]
    assert "segcore.models.yolact.demo" in graph["segcore.data.synthetic"]
    assert not any(m.startswith("segcore.data") for m in graph["segcore.models.yolact.zoo"])
