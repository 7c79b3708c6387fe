"""The local Redis's configuration: persistence with an append-only file."""

from __future__ import annotations

from pathlib import Path

from services.common.settings import Settings
from services.infra.redis_server import redis_config


def directives(text: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in text.splitlines() if line)


def test_local_redis_keeps_its_data_in_an_append_only_file(tmp_path: Path) -> None:
    conf = directives(redis_config(Settings(redis_port=16379), tmp_path, "pw"))
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["dir"] == f'"{tmp_path}"'
    assert conf["port"] == "16379"
    assert conf["requirepass"] == '"pw"'
    assert conf["bind"] == "127.0.0.1"
