"""Redis keys of segstream and the client factory."""

from __future__ import annotations

from pathlib import Path

import redis

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


def make_redis(settings: Settings, **overrides: object) -> redis.Redis:
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, **overrides)
    return redis.Redis(
        host=settings.host,
        port=settings.redis_port,
        password=redis_password(settings),
        socket_connect_timeout=5,
        **overrides,  # type: ignore[arg-type]
    )
