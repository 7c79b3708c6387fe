"""The SDK on its own: ``pip install clients/python`` into a fresh virtual environment
(no system site packages, so no torch, no segstream), then a subscriber there
(sdk_subscriber.py) reading a running API's events with the blocking and the asyncio client
while the test publishes events into Redis: each starts from an id, and each resumes by
itself across an API restart during which events were published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.client import Client
from services.common.events import Instance, MaskEvent, encode_event
from services.common.redis import EventPublisher, entry_id, make_redis
from services.common.settings import Settings
from tests.integration.api_server import READ_TOKEN, WRITE_TOKEN, ApiServer, api_settings
from tests.integration.workers import ROOT, wait_for

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtual environment with the SDK installed (not editable) and
    nothing else of this repository."""
    venv = tmp_path_factory.mktemp("sdk") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    sdk = str(ROOT / "clients" / "python")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--progress-bar", "off", sdk],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "segstream-client" in names and {"httpx", "websockets"} <= names
    assert not names & {"torch", "torchvision", "segstream", "numpy", "redis", "fastapi"}
    return python


def _event(stream: str, seq: int, now: float) -> MaskEvent:
    instances = (
        Instance("person", 0, 0.9, (1.0, 2.0, 10.0, 12.0), (24, 32), "o`1", track_id=seq + 1),
        Instance("car", 2, 0.6, (3.0, 4.0, 20.0, 22.0), (24, 32), "o`1"),
    )
    return MaskEvent(stream, seq, seq / 5, now + seq / 5, now + seq / 5, MODEL, 32, 24, instances)


def test_the_sdk_alone_subscribes_and_resumes(
    sdk_python: Path, ns_settings: Settings, tmp_path: Path
) -> None:
    stream = f"cam-{uuid.uuid4().hex[:8]}"  # Redis keys are per stream id, not per namespace
    settings = api_settings(ns_settings)
    now = time.time()
    ids = [entry_id(now + seq / 5, seq) for seq in range(8)]
    redis_client = make_redis(settings)
    publisher = EventPublisher(redis_client, 1000)

    def publish(*seqs: int) -> None:
        published = publisher.publish(
            [(stream, ids[s], encode_event(_event(stream, s, now))) for s in seqs]
        )
        assert published == [True] * len(seqs)

    def websocket_subscribers() -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith('segstream_subscribers{kind="websocket"}'):
                return float(line.split()[-1])
        return 0.0

    server = ApiServer(settings).__enter__()
    subscriber: subprocess.Popen[str] | None = None
    try:
        Client(server.url, WRITE_TOKEN).add("rtsp://c/x", MODEL, id=stream)
        publish(0, 1, 2)  # before anyone subscribes: read back from the id of seq 0
        subscriber = subprocess.Popen(
            [str(sdk_python), str(ROOT / "tests/integration/sdk_subscriber.py"),
             server.url, READ_TOKEN, stream, ids[0], "5", "2"],
            cwd=tmp_path,  # nothing of the repository on its path
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert subscriber.stdout is not None
        lines: list[dict[str, Any]] = []

        def read_until(done: Callable[[dict[str, Any]], bool]) -> None:
            assert subscriber is not None and subscriber.stdout is not None
            for text in subscriber.stdout:
                lines.append(json.loads(text))
                if done(lines[-1]):
                    return
            assert subscriber.stderr is not None
            raise AssertionError(f"the subscriber ended early: {subscriber.stderr.read()}")

        def restart_publishing(*seqs: int) -> ApiServer:
            """The API goes away under the subscriber, events come meanwhile, it is back."""
            server.__exit__()
            publish(*seqs)
            return ApiServer(settings).__enter__()

        read_until(lambda line: "found" in line)
        environment = lines[0]
        assert environment["found"] == {"torch": False, "segcore": False, "services": False}
        assert not str(environment["module"]).startswith(str(ROOT / "clients"))  # installed

        wait_for(lambda: websocket_subscribers() >= 1, 60, "the blocking client to subscribe")
        publish(3)  # while it reads
        read_until(lambda line: line.get("seq") == 3)
        server = restart_publishing(4, 5)
        read_until(lambda line: "sync" in line)
        publish(6)  # for the asyncio client, which starts after the last id the other saw
        read_until(lambda line: line.get("seq") == 6)
        server = restart_publishing(7)
        read_until(lambda line: "sync_error" in line)
        assert subscriber.wait(timeout=60) == 0
    finally:
        if subscriber is not None and subscriber.poll() is None:
            subscriber.kill()
            subscriber.wait(timeout=10)
        server.__exit__()
        redis_client.close()

    received = [line for line in lines if "mode" in line]
    assert [(r["mode"], r["id"], r["seq"]) for r in received] == [
        # after seq 0, and across a restart: no gap, no repeat
        *(("sync", ids[s], s) for s in range(1, 6)),
        # after the blocking client's last id, and across a restart
        *(("async", ids[s], s) for s in (6, 7)),
    ]
    for r in received:
        assert r["type"] == "MaskEvent"
        assert r["labels"] == ["person", "car"] and r["tracks"] == [r["seq"] + 1, None]
    assert lines[-2] == {"async_error": 4404} and lines[-1] == {"sync_error": 4404}
