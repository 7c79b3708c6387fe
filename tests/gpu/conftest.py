"""The GPU tier: every test here needs a CUDA device and is skipped, with the reason, without."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device on this machine (torch.cuda.is_available())")
    for item in items:
        if "tests/gpu/" in str(item.fspath):
            item.add_marker(skip)
