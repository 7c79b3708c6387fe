"""Start, stop and report the local servers as one unit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.common.settings import Settings
from services.infra.errors import InfraError
from services.infra.kafka import KafkaServer
from services.infra.process import ManagedProcess, free_port, port_in_use
from services.infra.prometheus import PrometheusServer
from services.infra.redis_server import RedisServer

# Which setting moves each port, for the message when one is taken.
_PORT_SETTINGS = {
    "kafka_port": "SEGSTREAM_KAFKA_PORT",
    "kafka_controller_port": "SEGSTREAM_KAFKA_CONTROLLER_PORT",
    "redis_port": "SEGSTREAM_REDIS_PORT",
    "prometheus_port": "SEGSTREAM_PROMETHEUS_PORT",
}


def fresh_settings(run_dir: Path, **changes: object) -> Settings:
    """Settings of a private set of servers (tests, benchmarks): their run folder and every
    port free right now, metrics on any free port; sources may be loopback cameras and files
    anywhere (the test cameras listen on 127.0.0.1); ``changes`` set other fields."""
    sources: dict[str, object] = {
        "source_allowed_networks": ["127.0.0.0/8", "::1/128"],
        "file_root": Path("/"),
    }
    return Settings(
        run_dir=run_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        prometheus_port=free_port(),
        metrics_port=0,
        **{**sources, **changes},  # type: ignore[arg-type]
    )


class Component(Protocol):
    name: str
    proc: ManagedProcess

    @property
    def ports(self) -> list[int]: ...
    def prepare(self, *, refresh: bool = False) -> None: ...
    def start(self) -> None: ...
    def ready(self) -> bool: ...
    def wait_ready(self, timeout: float = ...) -> None: ...
    def describe(self) -> str: ...


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    answering: bool
    address: str
    log_file: Path


class Infra:
    """The local Kafka, Redis and Prometheus of one ``Settings.infra_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.infra_dir
        self.log_dir = self.run_dir / "logs"
        self.components: list[Component] = [
            KafkaServer(settings, self.run_dir, self.log_dir),
            RedisServer(settings, self.run_dir, self.log_dir),
            PrometheusServer(settings, self.run_dir, self.log_dir),
        ]

    def _check_ports(self, component: Component) -> None:
        for port in component.ports:
            if port_in_use(self.settings.host, port):
                setting = next(
                    env
                    for field, env in _PORT_SETTINGS.items()
                    if getattr(self.settings, field) == port
                )
                raise InfraError(
                    f"port {port} on {self.settings.host} ({component.name}) is in use by "
                    "another process",
                    f"stop that process, or pick a free port with {setting}=<port>",
                )

    def prepare(self, *, refresh: bool = False, log: bool = True) -> None:
        """Resolve and check what the servers need (jars, binaries), starting nothing."""
        for comp in self.components:
            if log:
                print(f"- checking {comp.name} ...", flush=True)
            comp.prepare(refresh=refresh)

    def up(self, *, refresh: bool = False, log: bool = True) -> list[str]:
        """Start every server that is not running; return the names started.

        When one fails to start, the ones this call started are stopped again.
        """
        say = print if log else (lambda *_a, **_k: None)
        self.prepare(refresh=refresh, log=log)
        started: list[Component] = []
        try:
            for comp in self.components:
                if comp.proc.running():
                    say(f"- {comp.name} already running", flush=True)
                    continue
                self._check_ports(comp)
                say(f"- starting {comp.name} ...", flush=True)
                comp.start()
                started.append(comp)
                comp.wait_ready()
                say(f"  {comp.name} ready at {comp.describe()}", flush=True)
        except BaseException:
            for comp in reversed(started):
                comp.proc.stop()
            raise
        say(f"logs: {self.log_dir}", flush=True)
        return [c.name for c in started]

    def down(self) -> list[str]:
        """Stop what ``up`` started (recorded in the pid files); return the names stopped."""
        return [comp.name for comp in reversed(self.components) if comp.proc.stop()]

    def status(self) -> list[ComponentStatus]:
        return [
            ComponentStatus(
                name=comp.name,
                running=comp.proc.running(),
                answering=comp.ready(),
                address=comp.describe(),
                log_file=comp.proc.log_file,
            )
            for comp in self.components
        ]
