"""A missing validation tool fails the deploy tier, with or without CI set: it never skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import tools


@pytest.mark.parametrize("ci", [None, "true"])
def test_a_missing_tool_fails_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"kustomize v5\.x not found") as failed:
        tools.missing_tool("kustomize v5.x")
    assert "scripts/k8s-tools.sh" in str(failed.value)


def test_a_missing_python_package_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.fail.Exception) as failed:
        tools.require_modules("yaml", "no_such_module_here")
    message = str(failed.value)
    assert message.startswith("Python package(s) no_such_module_here (the `dev` extra) not found")
    assert "pip install -e '.[dev]'" in message


def test_no_crds_in_an_empty_tools_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGSTREAM_CACHE_DIR", str(tmp_path))
    assert tools.find_crd_dir() is None


def test_no_kustomize_in_an_empty_tools_folder_and_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEGSTREAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tools.find_kustomize() is None
