"""Per-stream health, kept by the ingest worker that owns the stream and written to the Redis
hash ``segstream:status:<stream id>``.

States: ``pending`` (waiting for room on its worker, reason ``worker-full``),
``connecting`` (opening the source), ``running`` (frames flow), ``stalled`` (no frame
for the read timeout: the worker reconnects), ``backoff`` (waiting before the next attempt,
capped exponential with jitter), ``error`` (a reason code and message; the worker does not
retry), ``finished`` (a file that ended). Writes are best effort: while Redis is away the
stream goes on and the latest state is written when it answers again. A status in a terminal
state (``error``, ``finished``) is written again every ``rewrite_s`` while its worker owns the
stream, so a Redis that lost the hash (restarted without its data, the key expired) shows it
again. The owner also reads the capture time of the stream's newest event in Redis
(``last_event_at``), which gives the stream's staleness: how far its published events trail
now.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

import redis

from services.common.redis import entry_time, masks_key, status_key

log = logging.getLogger("segstream.health")


class State(enum.StrEnum):
    PENDING = "pending"  # not started: its worker runs its limit of streams (worker-full)
    CONNECTING = "connecting"
    RUNNING = "running"
    STALLED = "stalled"
    BACKOFF = "backoff"
    ERROR = "error"
    FINISHED = "finished"


TERMINAL = frozenset({State.ERROR, State.FINISHED})  # states the stream never leaves by itself


class Reason(enum.StrEnum):
    """Reason codes of ``error``, ``stalled``, ``backoff`` and ``pending``."""

    UNREACHABLE = "unreachable"  # connection refused, unknown host, open timed out
    NOT_VIDEO = "not-video"  # the source answered with something that has no video
    NO_SUCH_FILE = "no-such-file"
    DECODE_ERROR = "decode-error"  # the data stopped decoding (e.g. a truncated file)
    DISCONNECTED = "disconnected"  # a live source ended or dropped the connection
    NO_FRAMES = "no-frames"  # no frame within the read timeout
    UNKNOWN_MODEL = "unknown-model"  # the stream names no registered model
    FORBIDDEN_DESTINATION = "forbidden-destination"  # the destination policy refuses the source
    INTERNAL = "internal"  # a bug in the stream's loop (the message says which)
    WORKER_FULL = "worker-full"  # pending: the owning worker runs ``ingest_max_streams``


@dataclass
class Backoff:
    """Capped exponential delays with full jitter in [delay/2, delay]."""

    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next(self) -> float:
        delay = min(self.cap_s, self.base_s * (2.0**self.attempt))
        self.attempt += 1
        return delay * self.rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


class StatusDecodeError(ValueError):
    """A status hash value that does not parse; the message names the field."""


StatusHash: TypeAlias = Mapping[bytes, bytes] | Mapping[str, str]  # HGETALL's reply
_N = TypeVar("_N", int, float)


def _text_fields(raw: StatusHash) -> dict[str, str]:
    def text(value: bytes | str) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else value

    return {text(k): text(v) for k, v in raw.items()}


def _number(fields: dict[str, str], name: str, kind: type[_N], default: _N) -> _N:
    if name not in fields:
        return default
    try:
        return kind(fields[name])
    except ValueError:
        raise StatusDecodeError(f"{name}: not a number: {fields[name]!r}") from None


@dataclass(frozen=True)
class StreamStatus:
    """The status hash ``segstream:status:<stream id>`` as a value: one flat Redis hash of
    strings, written by :class:`StreamHealth` and read by the API.

    Fields (hash field = attribute; numbers as decimal text): ``state`` (a :class:`State`
    value), ``reason`` (a :class:`Reason` value or ""), ``message`` (free text that may hold a
    source URL: redact it before showing it), ``reconnects`` and ``frames`` (ints),
    ``last_frame_at`` (epoch seconds, 3 decimals; written as ``0.000`` and read as None before
    the first frame), ``fps`` (2 decimals, over the last 5 s), ``seq`` (the last frame's
    sequence number, -1 before any), ``worker`` (the owning ingest worker's id),
    ``updated_at`` (epoch seconds of the write, 3 decimals; not in the hash when None),
    ``last_event_at`` (capture time, epoch seconds with 3 decimals, of the stream's newest
    mask event in Redis as the owner last read it; not in the hash when None: no event yet).
    """

    state: str
    reason: str = ""
    message: str = ""
    reconnects: int = 0
    frames: int = 0
    last_frame_at: float | None = None
    fps: float = 0.0
    seq: int = -1
    worker: str = ""
    updated_at: float | None = None
    last_event_at: float | None = None

    def encode(self) -> dict[str, str]:
        """The hash's fields, as ``HSET key mapping=...`` takes them."""
        fields = {
            "state": self.state,
            "reason": self.reason,
            "message": self.message,
            "reconnects": str(self.reconnects),
            "frames": str(self.frames),
            "last_frame_at": f"{self.last_frame_at or 0.0:.3f}",
            "fps": f"{self.fps:.2f}",
            "seq": str(self.seq),
            "worker": self.worker,
        }
        if self.updated_at is not None:
            fields["updated_at"] = f"{self.updated_at:.3f}"
        if self.last_event_at is not None:
            fields["last_event_at"] = f"{self.last_event_at:.3f}"
        return fields

    @classmethod
    def parse(cls, raw: StatusHash) -> StreamStatus:
        """The status of a hash; a missing field takes its default (``state``: ``unknown``).
        Raises :class:`StatusDecodeError` naming a number that does not parse."""
        fields = _text_fields(raw)
        updated_at = _number(fields, "updated_at", float, 0.0)
        return cls(
            state=fields.get("state", "unknown"),
            reason=fields.get("reason", ""),
            message=fields.get("message", ""),
            reconnects=_number(fields, "reconnects", int, 0),
            frames=_number(fields, "frames", int, 0),
            last_frame_at=_number(fields, "last_frame_at", float, 0.0) or None,
            fps=_number(fields, "fps", float, 0.0),
            seq=_number(fields, "seq", int, -1),
            worker=fields.get("worker", ""),
            updated_at=updated_at if "updated_at" in fields else None,
            last_event_at=_number(fields, "last_event_at", float, 0.0) or None,
        )

    @classmethod
    def decode(cls, raw: StatusHash) -> StreamStatus | None:
        """The status of a hash, None for an empty one (nothing written yet). Tolerant, as a
        reader showing health must be: when a number does not parse, only ``state`` is kept
        and every other field takes its default."""
        if not raw:
            return None
        try:
            return cls.parse(raw)
        except StatusDecodeError:
            return cls(state=_text_fields(raw).get("state", "unknown"))


def staleness(
    state: State, last_event_at: float | None, running_since: float | None, now: float
) -> float | None:
    """Seconds by which a running stream's newest event trails ``now`` (measured from
    ``running_since`` while it has none), never negative; None for any other state, where
    no event is due. Times are epoch seconds."""
    since = last_event_at if last_event_at is not None else running_since
    if state != State.RUNNING or since is None:
        return None
    return max(0.0, now - since)


class StreamHealth:
    """The health of one stream: the state machine's current values, mirrored to Redis.

    ``rewrite_s``: a terminal status is written again this often (see the module docstring);
    ``events_every_s``: how often :meth:`refresh` reads the newest event's capture time.
    """

    def __init__(
        self,
        client: redis.Redis | None,
        stream_id: str,
        worker: str,
        ttl_s: int = 86400,
        rewrite_s: float = 10.0,
        events_every_s: float = 5.0,
    ) -> None:
        self.client = client
        self._own_client = client  # what :meth:`release` closes, even after forget()
        self.stream_id = stream_id
        self.worker = worker
        self.ttl_s = ttl_s
        self.rewrite_s = rewrite_s
        self.events_every_s = events_every_s
        self.state = State.CONNECTING
        self.reason = ""
        self.message = ""
        self.reconnects = 0
        self.frames = 0
        self.last_frame_at = 0.0
        self.fps = 0.0
        self.seq = -1
        self.last_event_at: float | None = None  # capture time of the newest event in Redis
        self.running_since: float | None = None  # epoch seconds; None unless running
        self._events_read = -float("inf")  # monotonic time of the last read of the newest event
        self._lock = threading.Lock()
        # One write at a time, in the order of the snapshots they write: a flush that took
        # its snapshot before a state change must not land after that change's write.
        self._write_lock = threading.Lock()
        self._window: list[float] = []
        self._dirty = False  # nothing is written before the runner has read the last seq
        self._last_write = 0.0

    def set(self, state: State, reason: str = "", message: str = "") -> None:
        with self._lock:
            changed = state != self.state or reason != self.reason
            if state != State.RUNNING:
                self.running_since = None
            elif self.state != State.RUNNING or self.running_since is None:
                self.running_since = time.time()
            self.state, self.reason, self.message = state, reason, message
            self._dirty = True
        if changed:
            level = logging.WARNING if state in (State.ERROR, State.STALLED) else logging.INFO
            log.log(
                level,
                "stream %s",
                state.value,
                extra={"stream_id": self.stream_id, "reason": reason, "detail": message},
            )
        self.flush(force=True)

    def frame(self, seq: int, now: float) -> None:
        """A frame was produced; the rate is measured over the last 5 s."""
        with self._lock:
            self.frames += 1
            self.seq = seq
            self.last_frame_at = now
            self._window.append(now)
            while self._window and self._window[0] < now - 5.0:
                self._window.pop(0)
            span = self._window[-1] - self._window[0] if len(self._window) > 1 else 0.0
            self.fps = (len(self._window) - 1) / span if span > 0 else 0.0
            self._dirty = True
        self.flush()

    def _fields(self) -> dict[str, str]:
        """The status hash (:class:`StreamStatus`); the caller holds ``_lock``."""
        return StreamStatus(
            state=self.state.value,
            reason=self.reason,
            message=self.message,
            reconnects=self.reconnects,
            frames=self.frames,
            last_frame_at=self.last_frame_at,
            fps=self.fps,
            seq=self.seq,
            worker=self.worker,
            updated_at=time.time(),
            last_event_at=self.last_event_at,
        ).encode()

    def flush(self, force: bool = False) -> None:
        """Write to Redis when something changed (at most once a second unless forced), and
        a terminal status every ``rewrite_s`` even when nothing did."""
        with self._write_lock:
            now = time.monotonic()
            client = self.client
            if client is None or (not force and now - self._last_write < 1):
                return
            rewrite = self.state in TERMINAL and now - self._last_write >= self.rewrite_s
            if not (self._dirty or rewrite):
                return
            with self._lock:
                fields = self._fields()
                self._dirty = False  # a change from here on is written by a later flush
            try:
                key = status_key(self.stream_id)
                pipe = client.pipeline()
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                pipe.expire(key, self.ttl_s)
                pipe.execute()
                self._last_write = now
            except redis.RedisError as exc:
                self._dirty = True
                log.warning("status not written: %s", exc, extra={"stream_id": self.stream_id})

    def refresh(self, now: float | None = None) -> float | None:
        """The owner's periodic call (the ingest worker's loop): reads the capture time of the
        stream's newest event every ``events_every_s`` (written with the status's next write),
        flushes (:meth:`flush`), and returns the stream's :func:`staleness` at ``now`` (epoch
        seconds, default the current time)."""
        self._read_last_event()
        self.flush()
        with self._lock:
            state, last_event_at, since = self.state, self.last_event_at, self.running_since
        return staleness(state, last_event_at, since, time.time() if now is None else now)

    def _read_last_event(self) -> None:
        # Under the write lock: :meth:`release` closes the client's sockets from the runner's
        # thread, and a redis-py client read while it is being closed fails outside RedisError.
        with self._write_lock:
            client, started = self.client, time.monotonic()
            if client is None or started - self._events_read < self.events_every_s:
                return
            self._events_read = started
            try:
                newest: list[tuple[bytes, object]] = client.xrevrange(  # type: ignore[assignment]
                    masks_key(self.stream_id), count=1
                )
            except redis.RedisError:
                return  # the status write says so; the next read tries again
        if newest:
            at = entry_time(newest[0][0])
            with self._lock:
                self.last_event_at = at

    def last_seq(self) -> int:
        """The sequence number the stream's status holds (a previous owner's), or -1; read
        it before the first write."""
        if self.client is None:
            return -1
        try:
            raw = self.client.hget(status_key(self.stream_id), "seq")
            self.seq = int(raw) if raw is not None else -1
        except (redis.RedisError, ValueError):
            pass
        return self.seq

    def resume(self, seq: int) -> None:
        """Go on from ``seq``, the last sequence number the stream sent, handed over in
        memory by the runner this one replaces (its status hash may lag by a second); in
        place of :meth:`last_seq`, before the first write."""
        with self._lock:
            self.seq = seq

    def release(self) -> None:
        """The stream's runner ended: write its latest state now, then close the connections
        of the client it was built with (its own: one per runner; a later write would open
        one again). After :meth:`forget` nothing is written and the client is closed all the
        same."""
        self.flush(force=True)
        with self._write_lock:
            client = self._own_client
            if client is not None:
                try:
                    client.close()
                except redis.RedisError as exc:  # closing sockets only; nothing is lost
                    log.warning("status client not closed: %s", exc)

    def forget(self) -> None:
        """The stream was removed: delete its status and write no more (after a write in
        progress, so it cannot bring the status back)."""
        with self._write_lock:
            client, self.client = self.client, None
            if client is None:
                return
            try:
                client.delete(status_key(self.stream_id))
            except redis.RedisError as exc:
                log.warning("status not deleted: %s", exc, extra={"stream_id": self.stream_id})
