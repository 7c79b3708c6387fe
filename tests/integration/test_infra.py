"""`segstream infra`: status, loopback only, port conflicts, and a clean up/down cycle."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.settings import Settings
from services.infra import Infra, InfraError
from services.infra.process import port_in_use

pytestmark = pytest.mark.integration


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**os.environ, **settings.env()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on port."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, hexport = fields[1].split(":")
            if fields[3] == "0A" and int(hexport, 16) == port:
                found.append(addr)
    return found


def test_status_shows_every_server_answering(infra: Infra) -> None:
    out = _cli(infra.settings, "infra", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()[:3]}
    assert lines == {"kafka": "answering", "redis": "answering", "prometheus": "answering"}
    assert str(infra.log_dir) in out.stdout


def test_nothing_listens_beyond_loopback(infra: Infra) -> None:
    s = infra.settings
    for port in (s.kafka_port, s.kafka_controller_port, s.redis_port, s.prometheus_port):
        addrs = _listening(port)
        assert addrs, f"nothing listens on {port}"
        # 127.0.0.1, as IPv4 or as Java's IPv4-mapped IPv6 form (::ffff:127.0.0.1).
        loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
        assert set(addrs) <= loopback, f"port {port} listens on {addrs}"


def test_up_is_idempotent(infra: Infra) -> None:
    assert infra.up(log=False) == []


def test_port_in_use_is_named(
    infra: Infra, tmp_path: Path, make_settings: Callable[[Path], Settings]
) -> None:
    clash = make_settings(tmp_path).model_copy(update={"redis_port": infra.settings.redis_port})
    other = Infra(clash)
    with pytest.raises(InfraError, match=f"port {clash.redis_port} .*in use") as err:
        other.up(log=False)
    assert "SEGSTREAM_REDIS_PORT" in err.value.hint
    # What that call started before the clash (Kafka) is stopped again.
    assert not any(c.proc.running() for c in other.components)
    assert not port_in_use(clash.host, clash.kafka_port)


def test_cli_up_status_down_leaves_nothing(
    tmp_path: Path, make_settings: Callable[[Path], Settings]
) -> None:
    settings = make_settings(tmp_path)
    up = _cli(settings, "infra", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "kafka ready" in up.stdout and f"logs: {tmp_path / 'logs'}" in up.stdout
    infra = Infra(settings)
    pids = [c.proc.record() for c in infra.components]
    assert all(rec is not None and rec.alive() for rec in pids)

    status = _cli(settings, "infra", "status")
    assert status.returncode == 0, status.stdout

    down = _cli(settings, "infra", "down")
    assert down.returncode == 0, down.stderr
    assert "stopped: prometheus, redis, kafka" in down.stdout
    assert not any(rec is not None and rec.alive() for rec in pids)
    for port in (settings.kafka_port, settings.redis_port, settings.prometheus_port):
        assert not port_in_use(settings.host, port)

    after = _cli(settings, "infra", "status")
    assert after.returncode == 3
    assert "down" in after.stdout
