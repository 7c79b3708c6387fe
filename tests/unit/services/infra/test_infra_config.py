"""Configuration the infrastructure tools write, and the errors they give, without servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from services.common.kafka import frames_spec, frames_topic, registry_spec
from services.common.settings import Settings
from services.infra import InfraError, process
from services.infra.kafka import (
    check_java,
    cluster_id,
    resolve_jars,
    server_properties,
    verify_jars,
)
from services.infra.process import ManagedProcess, free_port, wait_until
from services.infra.prometheus import prometheus_config


def test_server_properties_listen_on_loopback_only(tmp_path: Path) -> None:
    settings = Settings(kafka_port=19092, kafka_controller_port=19093)
    props = dict(
        line.split("=", 1) for line in server_properties(settings, tmp_path).splitlines() if line
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["process.roles"] == "broker,controller"
    assert int(props["message.max.bytes"]) == settings.frame_max_bytes
    assert props["log.dirs"] == str(tmp_path)


def test_cluster_id_is_kafka_uuid_form() -> None:
    ids = {cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and "=" not in i for i in ids)
    # One id in 64 would start with '-' if drawn blindly: the command line would take it
    # for an option.
    assert not any(i.startswith("-") for i in ids)


def test_topic_specs() -> None:
    settings = Settings()
    assert registry_spec(settings).config["cleanup.policy"] == "compact"
    spec = frames_spec(settings, "yolact_r50")
    assert spec.name == "segstream.frames.yolact_r50"
    assert int(spec.config["max.message.bytes"]) == settings.frame_max_bytes
    with pytest.raises(ValueError, match="cannot name a topic"):
        frames_topic("bad name/..")


def test_prometheus_scrapes_the_services() -> None:
    settings = Settings(prometheus_port=19090, scrape_targets=["127.0.0.1:9500"])
    config = json.loads(prometheus_config(settings))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["segstream"]["static_configs"][0]["targets"] == ["127.0.0.1:9500"]
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:19090"]


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(prometheus_config(Settings()))
    out = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_java_missing_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError, match="java not found") as err:
        check_java()
    assert "apt-get install" in err.value.hint


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError, match="Java 11; Kafka 4 needs Java 17"):
        check_java()


def test_unreachable_maven_repository(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/maven2"
    settings = Settings(cache_dir=tmp_path / "cache", maven_repo=dead)
    expected = r"could not resolve org\.apache\.kafka:kafka_2\.13"
    with pytest.raises(InfraError, match=expected) as err:
        resolve_jars(settings, maven_local_repo=tmp_path / "m2")
    assert dead in str(err.value)
    assert "SEGSTREAM_MAVEN_REPO" in err.value.hint
    assert not (tmp_path / "cache" / f"kafka-{settings.kafka_version}" / "libs").exists()


def _fake_cache(libs: Path) -> Path:
    libs.mkdir(parents=True)
    jar = libs / "kafka_2.13-4.4.0.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        zf.writestr("kafka/Kafka.class", b"\xca\xfe\xba\xbe")
    (libs / "manifest.txt").write_text(f"{jar.name} {jar.stat().st_size}\n")
    return jar


def test_cache_verifies(tmp_path: Path) -> None:
    jar = _fake_cache(tmp_path / "libs")
    assert verify_jars(tmp_path / "libs") == [jar]


def test_corrupt_jar_in_cache(tmp_path: Path) -> None:
    jar = _fake_cache(tmp_path / "libs")
    size = jar.stat().st_size
    jar.write_bytes(b"\0" * size)
    with pytest.raises(InfraError, match=r"broken cache folder .*kafka_2\.13-4\.4\.0\.jar") as err:
        verify_jars(tmp_path / "libs")
    assert "--refresh" in err.value.hint


def test_missing_jar_in_cache_stops_resolution(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    libs = tmp_path / f"kafka-{settings.kafka_version}" / "libs"
    _fake_cache(libs).unlink()
    with pytest.raises(InfraError, match="broken cache folder"):
        resolve_jars(settings)


@pytest.fixture
def signals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Every signal ``services.infra.process`` sends, as (call, pid or group, signal), still
    sent: a test checks whom a stop signalled without waiting to see who died."""
    sent: list[tuple[str, int, int]] = []
    real_kill, real_killpg = os.kill, os.killpg

    def kill(pid: int, sig: int) -> None:
        sent.append(("kill", pid, sig))
        real_kill(pid, sig)

    def killpg(group: int, sig: int) -> None:
        sent.append(("killpg", group, sig))
        real_killpg(group, sig)

    monkeypatch.setattr(process.os, "kill", kill)
    monkeypatch.setattr(process.os, "killpg", killpg)
    return sent


def test_managed_process_stops_exactly_its_process(
    tmp_path: Path, signals: list[tuple[str, int, int]]
) -> None:
    proc = ManagedProcess("sleeper", tmp_path, tmp_path / "logs")
    rec = proc.start(["sleep", "60"])
    assert proc.running()
    other = subprocess.Popen(["sleep", "60"])
    try:
        assert proc.stop(timeout=5)
        assert not proc.running()
        assert not rec.alive()
        assert proc.record() is None
        assert signals, "nothing was signalled"
        assert {target for _, target, _ in signals} == {rec.pid}, "others were signalled"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_pid_reuse_is_not_killed(tmp_path: Path, signals: list[tuple[str, int, int]]) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        proc = ManagedProcess("ghost", tmp_path, tmp_path / "logs")
        # A pid file naming a live pid whose start time differs: a reused pid.
        proc.pid_file.write_text(json.dumps({"pid": victim.pid, "start_ticks": 1, "argv": ["old"]}))
        assert not proc.running()
        assert not proc.stop(timeout=1)
        assert signals == [], "a reused pid was signalled"
        assert victim.poll() is None
        assert not proc.pid_file.exists()
    finally:
        victim.kill()
        victim.wait()


def test_stop_escalates_to_kill(tmp_path: Path, signals: list[tuple[str, int, int]]) -> None:
    proc = ManagedProcess("stubborn", tmp_path, tmp_path / "logs")
    # The shell says when it ignores TERM (its trap set) and each time a TERM comes.
    script = "trap 'echo TERM ignored' TERM; echo trapped; while :; do sleep 0.1; done"
    rec = proc.start(["sh", "-c", script])
    wait_until(lambda: "trapped" in proc.log_tail(), timeout=10, what="the TERM trap")
    started = time.monotonic()
    assert proc.stop(timeout=1)
    took = time.monotonic() - started
    assert not rec.alive()
    assert "TERM ignored" in proc.log_tail(), "the process never saw the TERM"
    assert [sig for _, _, sig in signals] == [
        signal.SIGTERM,
        signal.SIGTERM,
        signal.SIGKILL,
        signal.SIGKILL,
    ]  # the group and the process: TERM, then KILL
    assert 1 <= took < 5  # the whole timeout for TERM, then at once
