"""Local infrastructure on loopback: Apache Kafka (KRaft), Redis and Prometheus.

``segstream infra up|down|status`` drives it. Each server runs as a child process started
with its own session, recorded in a pid file under ``Settings.infra_dir`` together with its
start time, so ``down`` stops exactly what ``up`` started and never a process that reused
the pid.
"""

from services.infra.errors import InfraError
from services.infra.manager import ComponentStatus, Infra, fresh_settings

__all__ = ["ComponentStatus", "Infra", "InfraError", "fresh_settings"]
