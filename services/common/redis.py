"""Redis keys of segstream and the client factory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from services.common.settings import Settings

MASKS_PREFIX = "segstream:masks:"
STATUS_PREFIX = "segstream:status:"


def masks_key(stream_id: str) -> str:
    """Redis stream (and pub/sub channel) of a camera stream's mask events."""
    return MASKS_PREFIX + stream_id


def status_key(stream_id: str) -> str:
    """Hash with a camera stream's health: state, last frame time, fps, last error."""
    return STATUS_PREFIX + stream_id


def local_password_file(settings: Settings) -> Path:
    """Where ``segstream infra up`` keeps the local server's generated password."""
    return settings.infra_dir / "redis" / "password"


def redis_password(settings: Settings) -> str | None:
    """The configured password, else the local server's generated one, else None."""
    if settings.redis_password is not None:
        return settings.redis_password.get_secret_value()
    try:
        return local_password_file(settings).read_text().strip() or None
    except OSError:
        return None


def _connection(settings: Settings, overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of a client of the configured server (URL or local)."""
    if settings.redis_url:
        return dict(overrides)
    return {
        "host": settings.host,
        "port": settings.redis_port,
        "password": redis_password(settings),
        "socket_connect_timeout": 5,
        **overrides,
    }


def make_redis(settings: Settings, **overrides: Any) -> redis.Redis:
    kwargs = _connection(settings, overrides)
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, **kwargs)
    return redis.Redis(**kwargs)


def make_async_redis(settings: Settings, **overrides: Any) -> aioredis.Redis:
    """The asyncio client of the same server (the API's subscriptions)."""
    kwargs = _connection(settings, overrides)
    if settings.redis_url:
        return aioredis.Redis.from_url(settings.redis_url, **kwargs)
    return aioredis.Redis(**kwargs)


LATEST_PREFIX = "segstream:latest:"
FRAMES_PREFIX = "segstream:frames:"
TRACKS_PREFIX = "segstream:tracks:"
ANALYTICS_PREFIX = "segstream:analytics:"


def tracks_key(stream_id: str) -> str:
    """String holding a camera stream's tracking document (its tracker's and analytics'
    state after its newest event: services/segment/tracks.py). It lives as long as the
    stream: track ids are never given twice."""
    return TRACKS_PREFIX + stream_id


def tracking_documents(client: redis.Redis, stream_ids: list[str]) -> dict[str, bytes | None]:
    """The tracking documents of these streams (None where one has none)."""
    values: list[Any] = client.mget([tracks_key(s) for s in stream_ids]) if stream_ids else []
    return dict(zip(stream_ids, values, strict=True))


def analytics_key(stream_id: str) -> str:
    """Redis stream (and pub/sub channel) of a camera stream's analytics events (zone and
    line events), entry ids assigned by Redis."""
    return ANALYTICS_PREFIX + stream_id


def latest_key(stream_id: str) -> str:
    """String holding a camera stream's most recent mask event."""
    return LATEST_PREFIX + stream_id


def frames_key(stream_id: str) -> str:
    """Redis stream of a camera stream's recent JPEG frames (viewers), same entry ids as
    its events; kept only when ``preview_frames`` > 0."""
    return FRAMES_PREFIX + stream_id


# One event, atomically: append to the stream under an id derived from (capture time, seq),
# and only when that id is new (a redelivered frame's id is not: XADD refuses ids at or
# below the stream's last one) announce it on the channel, keep it as the latest, keep the
# stream's tracking document that this event's frame left (ARGV[7], when given) and add the
# frame's analytics events (ARGV[8] on) to their stream and channel. So the tracking
# document in Redis always belongs to the stream's newest event. A removed stream's keys are
# set to expire (services/ingest/worker.py); a frame of it still in flight keeps them
# expiring: the document keeps its expiry (KEEPTTL), and a document or analytics stream
# it creates expires with the mask events.
_PUBLISH_LUA = """
local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], ARGV[1], 'event', ARGV[2])
if type(added) == 'table' and added.err then
  if string.find(added.err, 'equal or smaller', 1, true) then return 0 end
  return added
end
redis.call('PUBLISH', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
if ARGV[6] ~= '0' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], ARGV[1], 'jpeg', ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[4], ARGV[7], 'KEEPTTL')
end
for i = 8, #ARGV do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[i])
  redis.call('PUBLISH', KEYS[5], ARGV[i])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[4], ttl, 'LT')
  redis.call('PEXPIRE', KEYS[5], ttl, 'LT')
end
return 1
"""


# Error replies about the server's state rather than the command (memory, a read-only replica,
# failed persistence, loading, a busy script, a lost primary, permissions): they pass, so a
# publish waits for them. Any other error reply (an entry id Redis rejects, a key holding
# another type) is about the record, and no retry changes it.
SERVER_STATE_CODES = frozenset(
    {
        "OOM",
        "READONLY",
        "MISCONF",
        "LOADING",
        "BUSY",
        "NOSCRIPT",
        "MASTERDOWN",
        "NOREPLICAS",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "NOAUTH",
        "NOPERM",
        "WRONGPASS",
        "EXECABORT",
    }
)


def refuses_record(error: redis.ResponseError) -> bool:
    """Whether an error reply refuses the command's record (True) or reflects the server's
    state (False: retry later)."""
    code = getattr(error, "status_code", None) or str(error).split(" ", 1)[0]
    return code not in SERVER_STATE_CODES


def entry_id(captured_at: float, seq: int) -> str:
    """The Redis stream entry id of a frame's event: capture time in ms, then seq."""
    return f"{int(captured_at * 1000)}-{seq}"


def entry_time(entry: bytes | str) -> float:
    """The capture time, epoch seconds, in an event's entry id ``<capture ms>-<seq>`` (the
    inverse of :func:`entry_id`, to the millisecond)."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split("-", 1)[0]) / 1000.0


class EventPublisher:
    """Publishes encoded events (stream entry, pub/sub, latest key) in one round trip per
    batch; tells which were new, which were already there and which Redis refused."""

    def __init__(
        self, client: redis.Redis, maxlen: int, latest_ttl_s: int = 3600, frames: int = 0
    ) -> None:
        self.client = client
        self.maxlen = maxlen
        self.frames = frames
        self.latest_ttl_s = latest_ttl_s
        self.script = client.register_script(_PUBLISH_LUA)

    def publish(
        self,
        events: list[tuple[str, str, bytes]],
        jpegs: list[bytes] | None = None,
        tracks: Sequence[tuple[bytes | None, Sequence[bytes]]] | None = None,
    ) -> list[bool | redis.ResponseError]:
        """``events``: (stream id, entry id, payload), with each one's JPEG frame kept for
        viewers when ``frames`` > 0, and, with ``tracks``, each one's tracking document (None:
        none to write) and analytics events, written only with a new event. Per event: True
        where it was new, False where it was there already, the error reply where Redis
        refused that event (:func:`refuses_record`; the others of the batch are published all
        the same).

        Raises ``redis.ConnectionError``/``TimeoutError`` when Redis is unreachable, and the
        ``ResponseError`` of a refusal that reflects the server's state: the caller retries
        the batch (events published meanwhile come back False)."""
        pipe = self.client.pipeline(transaction=False)
        for index, (stream_id, entry, payload) in enumerate(events):
            keep = self.frames if jpegs is not None else 0
            document, analytics = tracks[index] if tracks is not None else (None, ())
            self.script(
                keys=[
                    masks_key(stream_id),
                    latest_key(stream_id),
                    frames_key(stream_id),
                    tracks_key(stream_id),
                    analytics_key(stream_id),
                ],
                args=[
                    entry,
                    payload,
                    self.maxlen,
                    self.latest_ttl_s,
                    jpegs[index] if jpegs is not None else b"",
                    keep,
                    document if document is not None else b"",
                    *analytics,
                ],
                client=pipe,
            )
        out: list[bool | redis.ResponseError] = []
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.ResponseError):
                if not refuses_record(reply):
                    raise reply
                out.append(reply)
            elif isinstance(reply, Exception):
                raise reply
            else:
                out.append(bool(reply))
        return out
