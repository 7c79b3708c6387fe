"""Settings: environment, file, defaults, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.settings import ConfigFileError, Settings


def test_defaults_are_loopback() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.bootstrap_servers == "127.0.0.1:9092"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGSTREAM_KAFKA_PORT", "19092")
    monkeypatch.setenv("SEGSTREAM_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("SEGSTREAM_REDIS_PASSWORD", "s3cret")
    settings = Settings()
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.infra_dir == tmp_path
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_file_below_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "segstream.toml"
    config.write_text("kafka_port = 29092\nredis_port = 16379\n")
    monkeypatch.setenv("SEGSTREAM_CONFIG", str(config))
    monkeypatch.setenv("SEGSTREAM_REDIS_PORT", "26379")
    settings = Settings()
    assert settings.kafka_port == 29092
    assert settings.redis_port == 26379


def test_missing_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGSTREAM_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigFileError, match=r"nope\.toml"):
        Settings()


def test_unknown_key_in_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "segstream.toml"
    config.write_text("kafka_prot = 1\n")
    monkeypatch.setenv("SEGSTREAM_CONFIG", str(config))
    with pytest.raises(ValidationError, match="kafka_prot"):
        Settings()


def test_bad_port_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_REDIS_PORT", "70000")
    with pytest.raises(ValidationError, match="redis_port"):
        Settings()
