"""Shared fixtures of every tier."""

from __future__ import annotations

import pytest

import cuda_ext


@pytest.fixture(scope="session")
def compiled_ops() -> None:
    """The compiled cuda_ext library; the test command builds it, so its absence fails."""
    if not cuda_ext.available():
        pytest.fail(
            "compiled ops are not loaded: "
            f"{cuda_ext.load_error() or 'SEGSTREAM_OPS_LIBRARY=off'}; run `segstream ops build`"
        )
