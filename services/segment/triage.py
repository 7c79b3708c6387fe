"""The segment worker's first step on a polled batch, pure: which frames are dropped (their
stream is not registered, or they are past their latency budget), which records cannot be
read (for the dead-letter topic) and which to segment.

Records are anything with the ``key``, ``value`` and ``headers`` of a kafka-python
``ConsumerRecord``; nothing here talks to Kafka or Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

from services.common.events import DecodeError
from services.common.frames import (
    DEFAULT_LIMITS,
    DeadLetter,
    Dropped,
    FrameLimits,
    FrameMessage,
    FrameTooLarge,
    decode_frame,
)
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
class Drop:
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
class Ready(Generic[R]):
    """A frame to segment: its record (for the dead-letter topic, should Redis refuse its
    event), the decoded item and its JPEG bytes (kept for viewers)."""

    record: R
    item: Item
    jpeg: bytes


@dataclass
class Triage(Generic[R]):
    """What a batch holds; every list keeps the batch's record order."""

    dropped: list[Drop] = field(default_factory=list)
    bad: list[Bad[R]] = field(default_factory=list)
    ready: list[Ready[R]] = field(default_factory=list)


def triage(
    records: Iterable[R],
    now: float,
    *,
    registered: Container[str],
    limits: FrameLimits = DEFAULT_LIMITS,
    decode: Callable[[FrameMessage], np.ndarray] = FrameMessage.image,
) -> Triage[R]:
    """Sort polled frame records at wall-clock time ``now`` (epoch seconds).

    A record whose key or headers do not decode is bad (``malformed``), one whose sizes are
    past ``limits`` too (``too-large``); a frame of a stream id not in ``registered`` is
    dropped (``unregistered``), and so is one whose ``now - captured_at`` exceeds its
    ``budget_ms`` (``latency-budget``), their images not decoded; a frame whose image does
    not decode to the size in its headers is bad (``bad-image``); the rest are ready, their
    images (H, W, 3) uint8 RGB and their ``frame_size`` (width, height) the source frame's.
    ``decode`` turns a message into its image (DecodeError when it cannot): the GPU worker
    passes one that only checks the size the image declares and decodes the batch on the
    device later (services/segment/gpu.py).
    """
    out: Triage[R] = Triage()
    for record in records:
        try:
            message = decode_frame(record.key, record.value, record.headers or [], limits)
        except FrameTooLarge as exc:
            out.bad.append(Bad(record, DeadLetter.TOO_LARGE, str(exc)))
            continue
        except DecodeError as exc:
            out.bad.append(Bad(record, DeadLetter.MALFORMED, str(exc)))
            continue
        if message.stream_id not in registered:
            out.dropped.append(Drop(message, Dropped.UNREGISTERED))
            continue
        if message.budget_ms is not None and now - message.captured_at > message.budget_ms / 1e3:
            out.dropped.append(Drop(message, Dropped.LATENCY_BUDGET))
            continue
        try:
            rgb = decode(message)
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
        out.ready.append(Ready(record, item, message.data))
    return out
