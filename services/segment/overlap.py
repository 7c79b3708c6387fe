"""Items through a chain of stages, each stage in a thread of its own, in submission order.

The GPU segment worker's scheduler (services/segment/gpu.py): while stage 2 (host work: RLE
strings, Redis publish) handles batch k, stage 1 (the device: decode, inference) already runs
batch k+1, and the caller (Kafka poll, triage) takes batch k+2. Pure threading, no torch: the
stages are plain callables, tested with CPU stand-ins.

Contract:

- ``stages[i]`` takes what ``stages[i-1]`` returned (the first takes the submitted item); each
  runs one item at a time, so items leave every stage, and the chain, in submission order.
- At most ``depth`` items are in flight (submitted and not yet through the last stage):
  :meth:`Overlap.submit` waits for room, which bounds the memory of batches held.
- A stage that raises fails its item: :meth:`Overlap.results` gives that item's
  :class:`Result` with the error, and every item submitted after it comes out cancelled
  (``cancelled=True``), run by no further stage, since the items after a failure must not be
  reported as done before it. :meth:`Overlap.submit` then raises :class:`PipelineFailed`.
- :meth:`Overlap.close` stops the chain: a stage already running an item finishes it, items
  not yet started in a stage are cancelled, and the threads end. Results completed before
  stay readable.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()  # sent down the chain by close(): each stage forwards it and ends


class PipelineFailed(RuntimeError):
    """An item failed in a stage; the chain takes no more items."""


@dataclass(frozen=True)
class Result(Generic[T]):
    """What became of one submitted item: ``tag`` as submitted, ``value`` the last stage's
    return, ``error`` what a stage raised (``value`` is then None), ``cancelled`` when no
    stage finished it because an earlier item failed or the chain was closed."""

    tag: T
    value: Any = None
    error: BaseException | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


@dataclass
class _Slot:
    seq: int
    tag: Any
    payload: Any
    error: BaseException | None = None
    cancelled: bool = False


class Overlap(Generic[T]):
    """Stages run in threads (``name-0``, ``name-1``, ...; daemon threads, so a process is
    never kept alive by them); see the module docstring for the contract."""

    def __init__(
        self, stages: Sequence[Callable[[Any], Any]], *, depth: int = 2, name: str = "overlap"
    ) -> None:
        if not stages:
            raise ValueError("Overlap needs at least one stage")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self._stages = list(stages)
        self._queues: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in stages]
        self._cond = threading.Condition()
        self._in_flight = 0
        self._done: collections.deque[Result[T]] = collections.deque()
        self._failed: BaseException | None = None
        self._failed_seq = -1  # the failed item's number: the items after it are cancelled
        self._submitted = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"{name}-{i}", daemon=True)
            for i in range(len(stages))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def in_flight(self) -> int:
        """Items submitted and not yet through the last stage."""
        with self._cond:
            return self._in_flight

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def submit(self, item: Any, tag: T, timeout: float | None = None) -> bool:
        """Put ``item`` into the first stage, once fewer than ``depth`` items are in flight.

        Returns False when no room came within ``timeout`` seconds (None: wait as long as
        it takes). Raises :class:`PipelineFailed` (from the stage's error) once an item has
        failed, RuntimeError once closed."""
        with self._cond:
            ready = self._cond.wait_for(
                lambda: self._in_flight < self.depth or self._failed is not None or self._closed,
                timeout,
            )
            if self._failed is not None:
                raise PipelineFailed("a stage failed; the chain takes no more items") from (
                    self._failed
                )
            if self._closed:
                raise RuntimeError("submit after close")
            if not ready:
                return False
            self._in_flight += 1
            seq = self._submitted
            self._submitted += 1
        self._queues[0].put(_Slot(seq, tag, item))
        return True

    def results(self, timeout: float = 0.0) -> list[Result[T]]:
        """Results of the items through the chain since the last call, in submission order;
        waits up to ``timeout`` seconds for the first when there is none yet."""
        with self._cond:
            if not self._done and timeout > 0:
                self._cond.wait_for(lambda: bool(self._done), timeout)
            out = list(self._done)
            self._done.clear()
            return out

    def close(self, timeout: float | None = None) -> bool:
        """Cancel the items not yet started, let running stages finish their item, end the
        threads; True when they ended within ``timeout`` seconds. Idempotent."""
        with self._cond:
            first = not self._closed
            self._closed = True
            self._cond.notify_all()
        if first:
            self._queues[0].put(_END)
        for thread in self._threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self._threads)

    # the stage threads --------------------------------------------------------------------
    def _run(self, index: int) -> None:
        stage, inbox = self._stages[index], self._queues[index]
        last = index == len(self._stages) - 1
        while True:
            slot = inbox.get()
            if slot is _END:
                if not last:
                    self._queues[index + 1].put(_END)
                return
            with self._cond:
                skip = self._closed or (self._failed is not None and slot.seq > self._failed_seq)
            if slot.error is None and not slot.cancelled:
                if skip:
                    slot.cancelled = True
                else:
                    try:
                        slot.payload = stage(slot.payload)
                    except BaseException as exc:  # handed to the caller, as the item's error
                        slot.error, slot.payload = exc, None
                        with self._cond:
                            if self._failed is None or slot.seq < self._failed_seq:
                                self._failed, self._failed_seq = exc, slot.seq
                            self._cond.notify_all()
            if last:
                self._finish(slot)
            else:
                self._queues[index + 1].put(slot)

    def _finish(self, slot: _Slot) -> None:
        result: Result[T] = Result(
            slot.tag,
            None if slot.error or slot.cancelled else slot.payload,
            slot.error,
            slot.cancelled,
        )
        with self._cond:
            self._in_flight -= 1
            self._done.append(result)
            self._cond.notify_all()
