"""``services.infra.children``: environment, log, metrics and stopping of a child process,
with plain Python children (``command``) in place of ``segstream``."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from services.common.metrics import sample_value
from services.common.settings import Settings
from services.infra import InfraError
from services.infra.children import Child, stop_all

PYTHON = (sys.executable, "-c")

SERVE = """
import json, os, threading
from services.common.metrics import PipelineMetrics
from services.common.settings import Settings
s = Settings()
m = PipelineMetrics()
m.frames_produced.labels("m").inc(3)
m.serve(s.host, s.metrics_port)
print(json.dumps({"msg": "ready", "ns": s.namespace, "redis": s.redis_port}))
print("extra", os.environ["EXTRA"], flush=True)
threading.Event().wait()
"""

# Counts the SIGTERMs it gets; exits 0 a moment after the first (a slow shutdown).
GRACEFUL = """
import signal, sys, threading, time
got = threading.Event()
def term(*_):
    print("term", flush=True)
    got.set()
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
got.wait()
time.sleep(0.5)
sys.exit(0)
"""

STUBBORN = """
import signal, threading
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring TERM", flush=True)
threading.Event().wait()
"""


def test_child_has_the_settings_its_port_and_a_log(tmp_path: Path) -> None:
    settings = Settings(namespace="kids", redis_port=16379)
    child = Child(
        "server", [SERVE], settings, tmp_path / "server.log", env={"EXTRA": "yes"}, command=PYTHON
    )
    try:
        child.wait_log("extra yes", timeout=60)
        records = list(child.log_records())
        assert records == [{"msg": "ready", "ns": "kids", "redis": 16379}]
        text = child.metrics()
        assert sample_value(text, "segstream_frames_produced_total", model="m") == 3
    finally:
        code = child.stop(timeout=10)
    assert code == -signal.SIGTERM
    assert child.returncode == code and not child.alive()


def test_stop_escalates_to_kill(tmp_path: Path) -> None:
    child = Child("stubborn", [STUBBORN], Settings(), tmp_path / "s.log", command=PYTHON)
    child.wait_log("ignoring TERM", timeout=30)
    assert child.stop(timeout=0.5) == -signal.SIGKILL


def test_stop_all_sends_one_term_each(tmp_path: Path) -> None:
    children = [
        Child(f"c{i}", [GRACEFUL], Settings(), tmp_path / f"c{i}.log", command=PYTHON)
        for i in range(2)
    ]
    for child in children:
        child.wait_log("ready", timeout=30)
    stop_all(children, timeout=20)
    assert [child.returncode for child in children] == [0, 0]
    assert [child.log().count("term") for child in children] == [1, 1]


def test_an_exited_child_fails_checks_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "dead.log"
    log.write_text("earlier run\n")
    script = "print('boom', flush=True); raise SystemExit(3)"
    child = Child("dead", [script], Settings(), log, append=True, command=PYTHON)
    with pytest.raises(InfraError, match=r"dead exited with 3[^\n]*\n(.*\n)*boom"):
        child.wait_log("never written", timeout=60)
    assert child.log() == "earlier run\nboom\n"
    with pytest.raises(InfraError, match="exited with 3"):
        child.check()
    assert child.stop() == 3
