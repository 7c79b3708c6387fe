"""deploy/docker/compose.yaml without Docker: what the laptop deployment must keep."""

from __future__ import annotations

import yaml

from tests.deploy.tools import deploy_root


def test_compose_redis_keeps_its_data_in_an_append_only_file() -> None:
    compose = yaml.safe_load((deploy_root() / "deploy" / "docker" / "compose.yaml").read_text())
    redis = compose["services"]["redis"]
    args = [str(a) for a in redis["command"]]
    flags = dict(zip(args[1::2], args[2::2], strict=False))
    assert args[0] == "redis-server"
    assert flags.get("--appendonly") == "yes"
    assert flags.get("--appendfsync") == "everysec"
    data_dir = flags.get("--dir", "/data")  # the redis image's working directory
    volumes = [str(v).split(":") for v in redis.get("volumes") or []]
    assert any(
        target == data_dir and source in (compose.get("volumes") or {})
        for source, target, *_ in volumes
    ), f"{data_dir} is not a named volume: {redis.get('volumes')}"
