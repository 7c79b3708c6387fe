"""The GPU worker's scheduler (services/segment/overlap.py) with CPU stand-ins for its stages:
order, overlap, the in-flight bound, errors and shutdown."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from services.segment.overlap import Overlap, PipelineFailed, Result

WAIT_S = 10.0  # how long a test waits for a condition before it fails


def drain(chain: Overlap[int], count: int) -> list[Result[int]]:
    """The first ``count`` results, waiting for each."""
    out: list[Result[int]] = []
    deadline = time.monotonic() + WAIT_S
    while len(out) < count and time.monotonic() < deadline:
        out.extend(chain.results(timeout=0.05))
    assert len(out) == count, f"{len(out)} of {count} results within {WAIT_S} s"
    return out


def jittered(fn: Callable[[Any], Any], seed: int) -> Callable[[Any], Any]:
    rng = random.Random(seed)

    def stage(x: Any) -> Any:
        time.sleep(rng.random() * 0.003)  # varied stage times shuffle any unordered design
        return fn(x)

    return stage


def test_items_leave_in_submission_order_through_every_stage() -> None:
    chain: Overlap[int] = Overlap(
        [jittered(lambda x: x * 2, 1), jittered(lambda x: x + 1, 2)], depth=3
    )
    try:
        for i in range(40):
            assert chain.submit(i, tag=i)
        results = drain(chain, 40)
    finally:
        assert chain.close(WAIT_S)
    assert [r.tag for r in results] == list(range(40))
    assert [r.value for r in results] == [2 * i + 1 for i in range(40)]
    assert all(r.ok for r in results)


def test_the_next_item_runs_in_the_first_stage_while_the_last_stage_holds_one() -> None:
    first_stage_took_1 = threading.Event()

    def device(x: int) -> int:
        if x == 1:
            first_stage_took_1.set()
        return x

    def host(x: int) -> bool:
        # item 0 stays here until item 1 is in the first stage: only an overlapped chain
        # gets there
        return first_stage_took_1.wait(WAIT_S) if x == 0 else True

    chain: Overlap[int] = Overlap([device, host], depth=2)
    try:
        chain.submit(0, tag=0)
        chain.submit(1, tag=1)
        results = drain(chain, 2)
    finally:
        chain.close(WAIT_S)
    assert [r.value for r in results] == [True, True]


def test_submit_waits_while_depth_items_are_in_flight() -> None:
    release = threading.Event()
    chain: Overlap[int] = Overlap([lambda x: release.wait(WAIT_S) and x], depth=2)
    try:
        assert chain.submit(0, tag=0, timeout=1)
        assert chain.submit(1, tag=1, timeout=1)
        assert chain.in_flight == 2
        assert not chain.submit(2, tag=2, timeout=0.05)  # full: no room within the timeout
        release.set()
        assert chain.submit(2, tag=2, timeout=WAIT_S)
        results = drain(chain, 3)
    finally:
        chain.close(WAIT_S)
    assert [r.value for r in results] == [0, 1, 2]


def test_an_error_fails_its_item_and_cancels_every_later_one() -> None:
    def device(x: int) -> int:
        if x == 2:
            raise ValueError("device stage failed on 2")
        return x

    reached_host: list[int] = []
    gate = threading.Event()

    def host(x: int) -> int:
        gate.wait(WAIT_S)  # items 0 and 1 wait here while 2 fails and 3, 4 queue behind it
        reached_host.append(x)
        return x

    chain: Overlap[int] = Overlap([device, host], depth=5)
    try:
        for i in range(5):
            chain.submit(i, tag=i)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                chain.submit(9, tag=9, timeout=0.01)
            except PipelineFailed as exc:
                assert isinstance(exc.__cause__, ValueError)
                break
        else:
            pytest.fail("submit never refused after the failure")
        gate.set()
        results = drain(chain, 5)
    finally:
        chain.close(WAIT_S)
    assert [r.tag for r in results] == [0, 1, 2, 3, 4]
    assert [r.value for r in results[:2]] == [0, 1] and results[0].ok and results[1].ok
    assert isinstance(results[2].error, ValueError) and results[2].value is None
    assert all(r.cancelled and r.error is None for r in results[3:])
    assert reached_host == [0, 1]  # items before the failure finish, none after it runs


def test_close_lets_the_running_item_finish_and_cancels_the_waiting_ones() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def stage(x: int) -> int:
        started.set()
        release.wait(WAIT_S)
        ran.append(x)
        return x

    chain: Overlap[int] = Overlap([stage, lambda x: x], depth=3)
    for i in range(3):
        chain.submit(i, tag=i)
    assert started.wait(WAIT_S)
    closer = threading.Thread(target=chain.close, args=(WAIT_S,))
    closer.start()
    deadline = time.monotonic() + WAIT_S
    while not chain.closed and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    closer.join(WAIT_S)
    assert not closer.is_alive()
    results = chain.results()
    assert ran == [0]
    assert [r.tag for r in results] == [0, 1, 2]
    assert results[0].cancelled  # finished by the first stage, not taken by the second
    assert all(r.cancelled for r in results)
    with pytest.raises(RuntimeError, match="after close"):
        chain.submit(3, tag=3)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        Overlap([])
    with pytest.raises(ValueError, match="depth must be >= 1"):
        Overlap([lambda x: x], depth=0)
