"""Real Kafka, Redis and Prometheus for the integration tier.

One set of servers per test session, on free loopback ports with their own folder, started
and stopped through ``services.infra`` (the code behind ``segstream infra``). The Kafka jar
cache is the user's, so a machine resolves it once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.common.settings import Settings
from services.infra import Infra, fresh_settings
from tests.integration.workers import Worker


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    running = Infra(fresh_settings(tmp_path_factory.mktemp("infra")))
    running.up(log=False)
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="session")
def make_settings() -> Callable[[Path], Settings]:
    """Settings of a further, separate set of servers (own folder, free ports)."""
    return fresh_settings


@pytest.fixture(scope="session")
def settings(infra: Infra) -> Settings:
    return infra.settings


@pytest.fixture
def own_infra(make_settings: Callable[[Path], Settings], tmp_path: Path) -> Iterator[Infra]:
    """Kafka, Redis and Prometheus of one test alone, for a test that stops or restarts
    them (the session's servers stay up for the others)."""
    infra = Infra(make_settings(tmp_path / "infra"))
    infra.up(log=False)
    try:
        yield infra
    finally:
        infra.down()


@pytest.fixture
def unique() -> str:
    """A name no other test uses: per-test topics and key prefixes."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def ns_settings(settings: Settings, unique: str) -> Settings:
    """The session's servers under a namespace of this test's own: its topics and consumer
    groups are new, so no other test's workers or records reach it."""
    return settings.model_copy(update={"namespace": f"t{unique}"})


@pytest.fixture
def spawn(ns_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start ``segstream ingest|segment ...`` processes; stopped (or killed) at teardown."""
    started: list[Worker] = []

    def start(*args: str, name: str | None = None) -> Worker:
        worker = Worker(ns_settings, list(args), tmp_path, name or f"{args[0]}-{len(started)}")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10)
