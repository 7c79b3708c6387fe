"""Debian's Prometheus, scraping the segstream processes."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from services.common.settings import Settings
from services.infra.errors import InfraError
from services.infra.process import ManagedProcess, wait_until


def prometheus_config(settings: Settings) -> str:
    """prometheus.yml for the local server (JSON is valid YAML)."""
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "static_configs": [{"targets": [f"{settings.host}:{settings.prometheus_port}"]}],
            },
            {
                "job_name": "segstream",
                "static_configs": [{"targets": list(settings.scrape_targets)}],
            },
        ],
    }
    return json.dumps(config, indent=2) + "\n"


class PrometheusServer:
    name = "prometheus"

    def __init__(self, settings: Settings, run_dir: Path, log_dir: Path) -> None:
        self.settings = settings
        self.home = run_dir / "prometheus"
        self.proc = ManagedProcess(self.name, run_dir, log_dir)

    @property
    def ports(self) -> list[int]:
        return [self.settings.prometheus_port]

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.prometheus_port}"

    def _binary(self) -> str:
        binary = shutil.which("prometheus")
        if binary is None:
            raise InfraError(
                "prometheus not found",
                "install it (apt-get install -y prometheus) or run scripts/bootstrap.sh",
            )
        return binary

    def prepare(self, *, refresh: bool = False) -> None:
        self._binary()

    def start(self) -> None:
        binary = self._binary()
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "prometheus.yml"
        config.write_text(prometheus_config(self.settings))
        self.proc.start(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address={self.settings.host}:{self.settings.prometheus_port}",
                "--web.enable-lifecycle",
            ]
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until(self.ready, timeout=timeout, what="Prometheus", process=self.proc)

    def describe(self) -> str:
        return self.url
