"""One typed settings object for every segstream process.

Values come, highest priority first, from keyword arguments, environment variables prefixed
``SEGSTREAM_`` (``SEGSTREAM_KAFKA_PORT=19092``), and an optional TOML file named by
``SEGSTREAM_CONFIG`` (keys are the field names: ``kafka_port = 19092``). Build it once at the
edge of a process (the CLI) and pass it in; no module reads it globally.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "SEGSTREAM_CONFIG"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segstream"


class ConfigFileError(ValueError):
    """The settings file named by SEGSTREAM_CONFIG is missing or unreadable."""


SCOPES = ("streams:write", "events:read")


class ApiToken(BaseModel):
    """A bearer token of the API and what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    token: SecretStr = Field(min_length=16)
    scopes: tuple[str, ...] = SCOPES

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SCOPES))
        if unknown:
            raise ValueError(f"unknown scopes {unknown}; known: {list(SCOPES)}")
        return value


class Settings(BaseSettings):
    """Settings of the local infrastructure and the services.

    Ports are TCP ports on ``host`` (loopback by default: nothing the local tools start
    listens beyond it).
    """

    model_config = SettingsConfigDict(env_prefix="SEGSTREAM_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"

    kafka_port: int = Field(9092, ge=1, le=65535)
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    kafka_bootstrap: str | None = Field(
        None, description="host:port list of an existing cluster; the local broker otherwise"
    )
    namespace: str = Field(
        "",
        pattern=r"^([a-z0-9][a-z0-9\-]{0,39})?$",
        description="prefix of topic and consumer-group names, for deployments sharing a "
        "Kafka cluster (staging and production, parallel test runs)",
    )
    kafka_version: str = "4.4.0"
    kafka_heap: str = "512m"
    kafka_jvm_options: str = Field(
        "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        description="JVM options of the local broker (space-separated): the client compiler "
        "and the serial collector keep a one-node broker light on cores it shares with "
        "inference (bench/broker.py)",
    )
    registry_partitions: int = Field(12, ge=1)
    frames_partitions: int = Field(12, ge=1)
    frame_max_bytes: int = Field(16 * 1024 * 1024, ge=1024 * 1024)
    frame_max_pixels: int = Field(
        4096 * 4096,
        ge=64 * 64,
        description="width x height a frame record may claim, for its image and for the "
        "source frame its masks are sized to; the segment worker dead-letters one past it "
        "(`too-large`)",
    )

    redis_port: int = Field(6379, ge=1, le=65535)
    redis_password: SecretStr | None = Field(
        None, description="the local server's generated password is used when unset"
    )
    redis_url: str | None = Field(None, description="redis:// URL of an existing server")
    redis_stream_maxlen: int = Field(10_000, ge=1)

    prometheus_port: int = Field(9090, ge=1, le=65535)
    metrics_port: int = Field(9400, ge=0, le=65535)
    scrape_targets: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:9400", "127.0.0.1:9401", "127.0.0.1:9402"],
        description="host:port of every process whose /metrics Prometheus scrapes",
    )

    cache_dir: Path = Field(default_factory=_default_cache_dir)
    run_dir: Path | None = Field(None, description="data, logs and pid files of `segstream infra`")
    maven_repo: str | None = Field(None, description="Maven repository URL; Maven Central if unset")
    log_level: str = "INFO"

    api_port: int = Field(8080, ge=0, le=65535)
    api_url: str | None = Field(
        None, description="the API the CLI talks to; local api_port if unset"
    )
    api_token: SecretStr | None = Field(None, description="the token the CLI and SDK send")
    api_tokens: list[ApiToken] = Field(
        default_factory=list, description="tokens the API accepts (JSON list in the environment)"
    )
    api_tokens_file: Path | None = Field(
        None, description="JSON file with more tokens (a mounted secret), same shape"
    )
    api_allow_files: bool = Field(
        False, description="accept file paths as stream URLs (under file_root only)"
    )
    file_root: Path | None = Field(
        None,
        description="folder every file source must lie under (symlinks and '..' resolved, "
        "relative paths taken from it), checked by the API and when the ingest worker opens "
        "the file; unset: no file source is accepted or opened",
    )
    source_allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDR networks sources may reach although denied (the more specific "
        "network wins); e.g. 127.0.0.0/8 for cameras on the service's own host",
    )
    source_denied_networks: list[str] = Field(
        default_factory=list,
        description="CIDR networks sources may not reach, besides the built-in loopback, "
        "link-local (cloud metadata), multicast and 0.0.0.0 ones; e.g. 10.0.0.0/8",
    )
    source_allowed_ports: list[int] = Field(
        default_factory=list,
        description="ports of the service's own servers (Kafka, Redis, API, metrics, "
        "Prometheus) that sources may nonetheless use",
    )
    api_max_body_bytes: int = Field(64 * 1024, ge=1024)
    api_subscriber_queue: int = Field(256, ge=1, description="events buffered per subscriber")
    api_subscriber_stall_s: float = Field(
        10.0, gt=0, description="a subscriber whose buffer stays full this long is dropped"
    )
    preview_frames: int = Field(
        0,
        ge=0,
        le=1000,
        description="recent frames per stream the segment worker keeps in "
        "Redis for viewers (0: none)",
    )
    gpu_half: bool = Field(
        False,
        description="a segment worker on CUDA runs inference in float16 autocast (outputs "
        "within the tolerance stated in services/segment/gpu.py)",
    )
    gpu_channels_last: bool = Field(
        False, description="a segment worker on CUDA stores its model's weights channels-last"
    )
    gpu_pipeline_depth: int = Field(
        2,
        ge=1,
        le=8,
        description="batches a segment worker on CUDA holds between poll and commit: while "
        "one is published, the next runs on the device",
    )
    ingest_max_streams: int = Field(
        64,
        ge=1,
        description="streams one ingest worker runs at once (a thread and a source "
        "connection each); more wait on it as `pending` (`worker-full`) until one of its "
        "streams ends or is removed",
    )
    deleted_stream_retention_s: int = Field(
        3600,
        ge=0,
        description="a removed stream's events, latest event and preview frames stay in "
        "Redis this long for late readers, then expire (0: deleted at once)",
    )

    @field_validator("source_allowed_networks", "source_denied_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not a CIDR network like 10.0.0.0/8") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @property
    def infra_dir(self) -> Path:
        """Folder of the local servers' data, logs and pid files."""
        return self.run_dir if self.run_dir is not None else self.cache_dir / "run"

    def env(self) -> dict[str, str]:
        """``SEGSTREAM_*`` variables that give a child process these settings (the fields
        set explicitly; secrets included, so keep the result away from logs). A child's whole
        environment is ``{**os.environ, **settings.env()}``, which is what
        ``services.infra.children.Child`` gives the processes it starts."""
        out: dict[str, str] = {}
        for name in sorted(self.model_fields_set):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, list):
                text = json.dumps(
                    [
                        {**v.model_dump(mode="json"), "token": v.token.get_secret_value()}
                        if isinstance(v, ApiToken)
                        else v
                        for v in value
                    ]
                )
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            out[f"SEGSTREAM_{name.upper()}"] = text
        return out

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.host}:{self.kafka_port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(CONFIG_ENV)
        if path:
            file = Path(path)
            if not file.is_file():
                raise ConfigFileError(f"{CONFIG_ENV}={path}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=file))
        return tuple(sources)
