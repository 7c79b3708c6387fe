"""The segment worker's first step on a polled batch, pure: which records are past their
latency budget, which cannot be read (for the dead-letter topic) and which to segment.

Records are anything with the ``key``, ``value`` and ``headers`` of a kafka-python
``ConsumerRecord``; nothing here talks to Kafka or Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from services.common.events import DecodeError
from services.common.frames import DeadLetter, Dropped, FrameMessage, decode_frame
from services.segment.infer import Item


class FrameRecord(Protocol):
    """The fields of a Kafka record that :func:`triage` reads."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


R = TypeVar("R", bound=FrameRecord)


@dataclass(frozen=True)
class Stale:
    """A frame dropped unsegmented."""

    message: FrameMessage
    reason: Dropped


@dataclass(frozen=True)
class Bad(Generic[R]):
    """A record for the dead-letter topic: why, and a detail naming what is wrong."""

    record: R
    reason: DeadLetter
    detail: str


@dataclass(frozen=True)
class Ready:
    """A frame to segment: the decoded item and its JPEG bytes (kept for viewers)."""

    item: Item
    jpeg: bytes


@dataclass
class Triage(Generic[R]):
    """What a batch holds; every list keeps the batch's record order."""

    stale: list[Stale] = field(default_factory=list)
    bad: list[Bad[R]] = field(default_factory=list)
    ready: list[Ready] = field(default_factory=list)


def triage(records: Iterable[R], now: float) -> Triage[R]:
    """Sort polled frame records at wall-clock time ``now`` (epoch seconds).

    A record whose key or headers do not decode is bad (``malformed``); a frame whose
    ``now - captured_at`` exceeds its ``budget_ms`` is stale (``latency-budget``; its image
    is not decoded); a frame whose image does not decode to the size in its headers is bad
    (``bad-image``); the rest are ready, their images (H, W, 3) uint8 RGB and their
    ``frame_size`` (width, height) the source frame's.
    """
    out: Triage[R] = Triage()
    for record in records:
        try:
            message = decode_frame(record.key, record.value, record.headers or [])
        except DecodeError as exc:
            out.bad.append(Bad(record, DeadLetter.MALFORMED, str(exc)))
            continue
        if message.budget_ms is not None and now - message.captured_at > message.budget_ms / 1e3:
            out.stale.append(Stale(message, Dropped.LATENCY_BUDGET))
            continue
        try:
            rgb = message.image()
        except DecodeError as exc:
            out.bad.append(Bad(record, DeadLetter.BAD_IMAGE, str(exc)))
            continue
        item = Item(
            message.stream_id,
            message.seq,
            message.pts,
            message.captured_at,
            rgb,
            message.frame_size,
        )
        out.ready.append(Ready(item, message.data))
    return out
