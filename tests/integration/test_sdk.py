"""The SDK and the CLI against the served API, real workers and a live camera: register,
health, a subscription that survives an API restart without a gap or a duplicate (also one
that had received no event yet), and `segstream streams add|ls|show|rm` and
`segstream watch --render`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from segcore.data import synthetic
from services.client import ApiError, Client, Received
from services.common.events import MaskEvent, encode_event
from services.common.redis import EventPublisher, entry_id, make_redis
from services.common.settings import Settings
from tests.integration.api_server import READ_TOKEN, WRITE_TOKEN, ApiServer, api_settings
from tests.integration.workers import ROOT, Worker, wait_for

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
SIZE = (240, 320)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "camera.mp4"
    synthetic.write_video(path, seed=17, num_frames=60, size=SIZE, fps=15)
    return path


def test_sdk_and_cli_end_to_end(
    ns_settings: Settings,
    tmp_path: Path,
    video: Path,
    compiled_ops: None,
) -> None:
    settings = api_settings(ns_settings, api_allow_files=True, preview_frames=20)
    workers = [
        Worker(settings, ["segment", "--model", MODEL], tmp_path, "segment"),
        Worker(settings, ["ingest"], tmp_path, "ingest"),
    ]
    server = ApiServer(settings).__enter__()
    try:
        client = Client(server.url, WRITE_TOKEN)
        created = client.add(str(video), MODEL, id="lobby", fps=5, realtime=True, loop=True)
        assert created["id"] == "lobby" and created["health"] is None
        with pytest.raises(ApiError) as err:
            client.add("ftp://x/y", MODEL)
        assert err.value.status == 422
        assert {m["name"] for m in client.models()} >= {MODEL}
        health = wait_for(
            lambda: (h := client.health("lobby")) and h["state"] == "running" and h,
            90,
            "the stream to run",
        )
        assert health["worker"].startswith("ingest-")

        reader = Client(server.url, READ_TOKEN)
        received = []
        for item in reader.subscribe("lobby", receive_timeout_s=60):
            received.append(item)
            if len(received) == 5:
                server.__exit__()  # the API goes away under the subscriber ...
                server = ApiServer(settings).__enter__()  # ... and comes back on its port
            if len(received) == 15:
                break
        seqs = [r.event.seq for r in received]
        assert seqs == list(range(seqs[0], seqs[0] + 15))  # no gap, no duplicate
        assert reader.frame("lobby", received[-1].id) is not None  # frames kept for viewers

        env = {
            **os.environ,
            **settings.env(),
            "SEGSTREAM_API_URL": server.url,
            "SEGSTREAM_API_TOKEN": WRITE_TOKEN,
        }

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "services.cli", *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        listed = cli("streams", "ls")
        assert listed.returncode == 0 and "lobby" in listed.stdout and "running" in listed.stdout
        shown = json.loads(cli("streams", "show", "lobby").stdout)
        assert shown["id"] == "lobby" and shown["health"]["state"] == "running"
        bad = cli("streams", "add", "rtsp://cam/x", "--model", "nope")
        assert bad.returncode == 1 and "model: unknown model 'nope'" in bad.stderr
        added = cli("streams", "add", "rtsp://u:secret@127.0.0.1:9/x", "--id", "gate")
        assert added.returncode == 0 and "rtsp://***@127.0.0.1:9/x" in added.stdout
        assert "secret" not in added.stdout

        out = tmp_path / "watch.mp4"
        watched = cli("watch", "lobby", "--count", "5", "--render", str(out))
        assert watched.returncode == 0, watched.stderr
        assert len([line for line in watched.stdout.splitlines() if " seq=" in line]) == 5
        with av.open(str(out)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 5 and frames[0].shape == (*SIZE, 3)
        spread = frames[-1].max(axis=2).astype(int) - frames[-1].min(axis=2).astype(int)
        assert int(np.count_nonzero(spread > 60)) > 100  # masks drawn in colour

        assert cli("streams", "rm", "gate").returncode == 0
        gone = cli("streams", "show", "gate")
        assert gone.returncode == 1 and "404" in gone.stderr
        client.delete("lobby")
        assert [s["id"] for s in client.list_streams()] == []
    finally:
        server.__exit__()
        for worker in workers:
            worker.stop(timeout=10)


def test_a_subscription_dropped_before_its_first_event_resumes_where_it_began(
    ns_settings: Settings,
) -> None:
    """``subscribe()`` from now, the API restarted before any event came, events published
    while it was away: the SDK resumes from the id of its first ``subscribed`` message, so
    it gets them (resuming "from now" again would skip them)."""
    stream = f"cam-{uuid.uuid4().hex[:8]}"  # Redis keys are per stream id, not per namespace
    settings = api_settings(ns_settings)
    server = ApiServer(settings).__enter__()
    received: list[Received] = []
    failed: list[BaseException] = []

    def subscriber() -> None:
        try:
            for item in Client(server.url, READ_TOKEN).subscribe(stream, receive_timeout_s=60):
                received.append(item)
                if len(received) == 3:
                    return
        except BaseException as exc:  # reported by the test, not lost in the thread
            failed.append(exc)

    def reading() -> bool:
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        return 'segstream_subscribers{kind="websocket"} 1.0' in metrics

    def missed(now: float) -> list[tuple[str, str, bytes]]:
        return [
            (
                stream,
                entry_id(now, seq),
                encode_event(MaskEvent(stream, seq, seq / 5, now, now, MODEL, 32, 24, ())),
            )
            for seq in range(3)
        ]

    thread = threading.Thread(target=subscriber, daemon=True)
    try:
        Client(server.url, WRITE_TOKEN).add("rtsp://c/x", MODEL, id=stream)
        thread.start()
        wait_for(reading, 30, "the subscription to start reading")
        server.__exit__()
        client = make_redis(settings)
        try:
            EventPublisher(client, 1000).publish(missed(time.time()))
        finally:
            client.close()
        server = ApiServer(settings).__enter__()
        thread.join(90)
        assert not thread.is_alive(), "the subscription did not resume"
        assert failed == []
        assert [r.event.seq for r in received] == [0, 1, 2]
    finally:
        server.__exit__()
