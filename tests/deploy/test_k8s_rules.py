"""The PrometheusRule in k8s/base carries exactly the rules Prometheus loads from
deploy/prometheus/rules (it is generated from them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_prometheus_rule_is_rendered_from_the_rule_files() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/render_k8s_rules.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
