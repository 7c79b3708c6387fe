"""Consumer lag from the brokers' end offsets (services/segment/lag.py), without Kafka."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from services.segment.lag import EndOffsets, consumer_lag


def test_lag_is_end_offsets_minus_positions() -> None:
    ends = {"p0": 7516, "p1": 100, "p2": 40}
    positions = {"p0": 0, "p1": 90, "p2": 50}
    # p2's end offset was read before the worker moved past it: 0, not negative
    assert consumer_lag(ends, positions) == 7516 + 10
    assert consumer_lag(ends, {}) == 0
    assert consumer_lag({}, positions) == 0  # nothing read yet
    assert consumer_lag({"p0": 10}, {"p0": 4, "p9": 0}) == 6  # p9's end not known yet
    assert consumer_lag(ends, {"p1": 100}) == 0


def test_end_offsets_reads_the_wanted_partitions_and_keeps_the_last_answer() -> None:
    calls: list[list[str]] = []
    answers: list[Mapping[str, int] | Exception] = [{"p0": 10, "p1": 20}, OSError("away")]

    def fetch(partitions: list[str]) -> Mapping[str, int]:
        calls.append(partitions)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    ends = EndOffsets(fetch)
    ends.refresh()
    assert calls == [] and ends.latest() == {}  # nothing wanted yet
    ends.want(["p1", "p0"])
    ends.refresh()
    assert calls == [["p0", "p1"]] and ends.latest() == {"p0": 10, "p1": 20}
    ends.refresh()  # the broker is away: the last answer stays
    assert ends.latest() == {"p0": 10, "p1": 20}


def test_the_thread_reads_a_new_assignment_at_once_and_stops() -> None:
    read = threading.Event()

    def fetch(partitions: list[str]) -> Mapping[str, int]:
        read.set()
        return dict.fromkeys(partitions, 5)

    ends = EndOffsets(fetch, interval_s=3600).start()
    try:
        ends.want(["p0"])
        assert read.wait(10), "a new assignment was not read before the interval"
    finally:
        ends.close()
    assert not ends._thread.is_alive()
    assert ends.latest() == {"p0": 5}
