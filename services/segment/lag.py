"""Consumer lag of a segment worker: the end offsets of its partitions, read by a thread with a
client of its own, minus the worker's positions.

The consumer's high watermark is only as new as the last fetch response of each partition
(and missing for partitions not fetched lately), so it under-reports what waits in Kafka;
the end offsets (ListOffsets, latest) are the broker's own. They are read at most every
``interval_s`` on :class:`EndOffsets`' thread, so the worker's loop never waits for the
broker; the lag is then :func:`consumer_lag` of the latest end offsets and the positions the
worker reads on its own thread (local state of its consumer).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from kafka import KafkaConsumer

from services.common.kafka import make_consumer
from services.common.settings import Settings

log = logging.getLogger("segstream.segment")

P = TypeVar("P")  # a partition: kafka's TopicPartition, or anything hashable in the tests


def consumer_lag(end_offsets: Mapping[P, int], positions: Mapping[P, int]) -> int:
    """Frames waiting: over the partitions in ``positions`` (partition -> the next offset the
    worker reads), their end offset (partition -> the offset the next record will get) minus
    the position, never below 0 (an end offset read before the position moved). A partition
    whose end offset is not known yet counts 0."""
    return sum(
        max(0, end_offsets[tp] - position)
        for tp, position in positions.items()
        if tp in end_offsets
    )


Fetch = Callable[[list[Any]], Mapping[Any, int]]


class EndOffsets:
    """The end offsets of the partitions last given to :meth:`want`, refreshed every
    ``interval_s`` by a daemon thread calling ``fetch(partitions)`` (it may block: the
    thread waits, nobody else). ``latest()`` is the last answer (empty before the first);
    a failed fetch keeps the previous one and is logged once until one succeeds."""

    def __init__(self, fetch: Fetch, interval_s: float = 5.0) -> None:
        self.fetch = fetch
        self.interval_s = interval_s
        self._partitions: list[Any] = []
        self._latest: dict[Any, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wanted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="end-offsets", daemon=True)
        self._failing = False

    def start(self) -> EndOffsets:
        self._thread.start()
        return self

    def want(self, partitions: Iterable[Any]) -> None:
        """The partitions to read from now on (the worker's assignment)."""
        wanted = sorted(partitions, key=repr)
        with self._lock:
            changed = wanted != self._partitions
            self._partitions = wanted
        if changed:
            self._wanted.set()  # a new assignment is read at once, not after the interval

    def latest(self) -> dict[Any, int]:
        with self._lock:
            return dict(self._latest)

    def refresh(self) -> None:
        """One read of the wanted partitions' end offsets (the thread's step)."""
        with self._lock:
            partitions = list(self._partitions)
        if not partitions:
            return
        try:
            answer = dict(self.fetch(partitions))
        except Exception as exc:  # the broker away or the client closing: keep the last
            if not self._failing:
                log.warning("end offsets not read: %s", exc)
            self._failing = True
            return
        self._failing = False
        with self._lock:
            self._latest = {tp: int(answer[tp]) for tp in partitions if tp in answer}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wanted.clear()
            self.refresh()
            self._wanted.wait(self.interval_s)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class BrokerEndOffsets:
    """``fetch`` for :class:`EndOffsets`: ``KafkaConsumer.end_offsets`` on a consumer of its
    own (no group, no subscription), made on first use, on the calling thread."""

    def __init__(self, settings: Settings, client_id: str, timeout_ms: int = 10_000) -> None:
        self.settings = settings
        self.client_id = client_id
        self.timeout_ms = timeout_ms
        self._consumer: KafkaConsumer | None = None

    def __call__(self, partitions: list[Any]) -> Mapping[Any, int]:
        if self._consumer is None:
            self._consumer = make_consumer(self.settings, client_id=self.client_id)
        return dict(self._consumer.end_offsets(partitions, timeout_ms=self.timeout_ms))

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception as exc:  # closing a client its thread may still use
                log.debug("end-offsets client not closed cleanly: %s", exc)
