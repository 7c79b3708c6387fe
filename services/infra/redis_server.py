"""Debian's redis-server on loopback, password required, with an append-only file.

Persistence: AOF (``appendonly yes``, ``appendfsync everysec``) under ``<run>/redis``, so a
restart keeps the mask events and the streams' status hashes (a crash loses at most the last
second of writes); no RDB snapshots (``save ""``): the AOF alone is the data.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from services.common.redis import local_password_file, make_redis, redis_password
from services.common.settings import Settings
from services.infra.errors import InfraError
from services.infra.process import ManagedProcess, wait_until


def redis_config(settings: Settings, home: Path, password: str) -> str:
    """The redis.conf of the local server: loopback, the password, data under ``home``
    (the append-only files in ``home/appendonly``), in the foreground, logging to stdout."""
    return "\n".join(
        [
            f"bind {settings.host}",
            f"port {settings.redis_port}",
            "protected-mode yes",
            f'requirepass "{password}"',
            f'dir "{home}"',
            'save ""',
            "appendonly yes",
            "appendfsync everysec",
            'appenddirname "appendonly"',
            "daemonize no",
            'logfile ""',
            "",
        ]
    )


class RedisServer:
    name = "redis"

    def __init__(self, settings: Settings, run_dir: Path, log_dir: Path) -> None:
        self.settings = settings
        self.home = run_dir / "redis"
        self.proc = ManagedProcess(self.name, run_dir, log_dir)

    @property
    def ports(self) -> list[int]:
        return [self.settings.redis_port]

    def _binary(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise InfraError(
                "redis-server not found",
                "install it (apt-get install -y redis-server) or run scripts/bootstrap.sh",
            )
        return binary

    def prepare(self, *, refresh: bool = False) -> None:
        self._binary()

    def _password(self) -> str:
        password = redis_password(self.settings)
        if password is None:
            password = secrets.token_urlsafe(24)
            path = local_password_file(self.settings)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
        return password

    def start(self) -> None:
        binary = self._binary()
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self.home / "redis.conf"
        # The password lives in a 0600 file, not on the command line where `ps` shows it.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(redis_config(self.settings, self.home, self._password()))
        self.proc.start([binary, str(conf)])

    def ready(self) -> bool:
        client = make_redis(self.settings, socket_timeout=2)
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_until(self.ready, timeout=timeout, what="Redis", process=self.proc)

    def describe(self) -> str:
        return f"{self.settings.host}:{self.settings.redis_port} (password required)"
