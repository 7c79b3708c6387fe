"""The data path with real servers and real video: ingest and segment worker processes,
Kafka, Redis; sources an H.264 file, an RTSP server and HLS over HTTP."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segcore.data import synthetic
from services.common.events import decode_event
from services.common.health import Reason
from services.common.metrics import sample_value
from services.common.redis import make_redis
from services.common.settings import Settings
from services.common.streams import StreamSpec, put_stream
from services.ingest.source import FIXED_MESSAGES
from tests.integration.sources import HlsServer, RtspServer, free_port, truncated_copy
from tests.integration.workers import (
    Worker,
    events,
    status,
    wait_events,
    wait_for,
    wait_state,
)

pytestmark = pytest.mark.integration

MODEL = "yolact_r18_demo"
SIZE = (240, 320)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "camera.mp4"
    synthetic.write_video(path, seed=91, num_frames=45, size=SIZE, fps=15)
    return path


def check_events(got: list, size: tuple[int, int], count: int | None = None) -> None:
    """Events decode at the frame's size, one per sampled frame, in order."""
    seqs = [event.seq for _, event in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    if count is not None:
        assert seqs == list(range(count))
    ids = [entry for entry, _ in got]
    for entry, event in got:
        assert entry == f"{int(event.captured_at * 1000)}-{event.seq}"
        assert (event.height, event.width) == size
        for inst in event.instances:
            assert mask_utils.decode(inst.rle()).shape == size
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


def changes(worker: Worker, stream_id: str, after: str) -> list[dict[str, Any]]:
    """The stream's state changes in ``worker``'s log that follow its last change to
    ``after`` (a state name), oldest first; empty until there are some."""
    found: list[dict[str, Any]] = []
    for record in worker.log_records():
        if record.get("stream_id") != stream_id or not record["msg"].startswith("stream "):
            continue
        if record["msg"] == f"stream {after}":
            found = []
        else:
            found.append(record)
    return found


def test_h264_file_through_kafka_and_redis(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    video: Path,
    unique: str,
    compiled_ops: None,
) -> None:
    segment = spawn("segment", "--model", MODEL)
    ingest = spawn("ingest")
    stream_id = f"file-{unique}"
    put_stream(ns_settings, StreamSpec(id=stream_id, url=str(video), model=MODEL, fps=5))
    client = make_redis(ns_settings)
    try:
        got = wait_events(client, stream_id, 15, 90)
        health = wait_state(client, stream_id, {"finished"}, 30)
    finally:
        client.close()
    check_events(got, SIZE, count=15)
    # 45 frames at 15 fps sampled at 5 fps: frames 0, 3, 6, ...
    assert [round(e.pts * 15) for _, e in got] == list(range(0, 45, 3))
    assert health["frames"] == "15" and health["reason"] == ""
    truth = list(synthetic.scene(91, 45, SIZE))
    ious = []
    for _, event in got:
        target = truth[round(event.pts * 15)][1]
        for inst in event.instances:
            mask = mask_utils.decode(inst.rle()).astype(bool)
            same = [
                m
                for m, c in zip(target["masks"], target["labels"], strict=True)
                if c == inst.class_id
            ]
            ious.append(max((float((mask & m).sum() / (mask | m).sum()) for m in same), default=0))
    assert ious and float(np.mean(ious)) > 0.7
    assert segment.alive() and ingest.alive()
    seen = ingest.metrics()
    assert sample_value(seen, "segstream_frames_decoded_total", stream=stream_id) == 45
    assert sample_value(seen, "segstream_frames_sampled_total", stream=stream_id) == 15
    assert sample_value(seen, "segstream_frames_produced_total", model=MODEL) == 15
    # the streams-by-state gauge is refreshed on the worker's next registry poll (0.5 s)
    wait_for(
        lambda: sample_value(ingest.metrics(), "segstream_streams", state="finished") == 1,
        10,
        "one finished stream in segstream_streams",
    )
    for name in ("decode", "encode"):
        assert sample_value(seen, f"segstream_{name}_seconds_count", stream=stream_id) > 0
    assert sample_value(seen, "segstream_produce_seconds_count", model=MODEL) == 15
    done = segment.metrics()
    assert sample_value(done, "segstream_frames_consumed_total", model=MODEL) == 15
    assert sample_value(done, "segstream_events_published_total", model=MODEL) == 15
    assert sample_value(done, "segstream_capture_to_publish_seconds_count", model=MODEL) == 15
    assert sample_value(done, "segstream_batch_size_sum", model=MODEL) == 15
    for name in ("batch_wait", "inference", "mask_encode", "publish"):
        assert sample_value(done, f"segstream_{name}_seconds_count", model=MODEL) >= 1
    assert sample_value(done, "segstream_consumer_lag", model=MODEL) == 0
    records = list(ingest.log_records())
    assert any(r.get("stream_id") == stream_id and r["msg"] == "stream finished" for r in records)


def test_rtsp_camera(
    ns_settings: Settings, spawn: Callable[..., Worker], video: Path, unique: str
) -> None:
    spawn("segment", "--model", MODEL)
    spawn("ingest")
    stream_id = f"rtsp-{unique}"
    with RtspServer(video) as camera:
        # This checks that reading the camera loses no frame: a budget of 10 minutes keeps a
        # segment worker short of CPU from dropping late frames (test_failures covers that).
        spec = StreamSpec(
            id=stream_id, url=camera.url, model=MODEL, fps=5, latency_budget_ms=600_000
        )
        put_stream(ns_settings, spec)
        client = make_redis(ns_settings)
        try:
            got = wait_events(client, stream_id, 12, 90)
            # the status is written at most once a second: wait for a rate over a few frames
            health = wait_for(
                lambda: (h := status(client, stream_id)) and float(h.get("fps", 0)) > 2 and h,
                15,
                "a measured frame rate above 2 fps",
            )
        finally:
            client.close()
    check_events(got, SIZE)
    seqs = [e.seq for _, e in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none lost in between
    pts = [e.pts for _, e in got]
    assert all(0.15 <= b - a <= 0.25 for a, b in itertools.pairwise(pts[2:]))  # 5 fps by pts
    assert health["state"] == "running"


def test_hls_over_http(
    ns_settings: Settings, spawn: Callable[..., Worker], video: Path, unique: str
) -> None:
    spawn("segment", "--model", MODEL)
    spawn("ingest")
    stream_id = f"hls-{unique}"
    with HlsServer(video) as server:
        # The playlist is read as fast as it downloads, before the segment worker may be
        # ready: a budget of 10 minutes keeps the default 5 s of a network source from
        # dropping the frames that wait for it.
        spec = StreamSpec(
            id=stream_id, url=server.url, model=MODEL, fps=5, latency_budget_ms=600_000
        )
        put_stream(ns_settings, spec)
        client = make_redis(ns_settings)
        try:
            health = wait_state(client, stream_id, {"finished", "error"}, 90)
            assert health["state"] == "finished", health
            got = wait_events(client, stream_id, 15, 60)
        finally:
            client.close()
    check_events(got, SIZE, count=15)
    assert [round(e.pts * 15) for _, e in got] == list(range(0, 45, 3))


def test_rtsp_outage_backs_off_and_recovers(
    ns_settings: Settings, spawn: Callable[..., Worker], video: Path, unique: str
) -> None:
    spawn("segment", "--model", MODEL)
    ingest = spawn("ingest", "--read-timeout", "3")
    stream_id = f"outage-{unique}"
    camera = RtspServer(video)
    camera.start()
    client = make_redis(ns_settings)
    try:
        put_stream(ns_settings, StreamSpec(id=stream_id, url=camera.url, model=MODEL, fps=5))
        wait_events(client, stream_id, 3, 90)
        camera.stop()
        # The killed server closes the connection: the reader reaches the end of the stream
        # at once (no read timeout), so the first state after running is a backoff for a
        # disconnection...
        first = wait_for(
            lambda: next(iter(changes(ingest, stream_id, after="running")), None),
            15,
            "the ingest worker to see the camera drop",
        )
        assert (first["msg"], first["reason"]) == ("stream backoff", "disconnected")
        # ... then an attempt while the camera is down is refused and backs off again.
        wait_for(
            lambda: (
                (h := status(client, stream_id))
                and h["state"] == "backoff"
                and h["reason"] == "unreachable"
                and int(h["reconnects"]) >= 1
            ),
            30,
            "a refused reconnect attempt",
        )
        camera.start()
        restarted = time.time()
        wait_state(client, stream_id, {"running"}, 45)
        wait_for(
            lambda: [e for _, e in events(client, stream_id) if e.captured_at > restarted],
            30,
            "events after the camera came back",
        )
        check_events(events(client, stream_id), SIZE)
        states = [r.get("msg") for r in ingest.log_records() if r.get("stream_id") == stream_id]
        assert states[-1] == "stream running"
    finally:
        camera.stop()
        client.close()
    assert sample_value(ingest.metrics(), "segstream_reconnects_total", stream=stream_id) >= 1


def test_bad_sources_end_in_their_state_and_leave_others_alone(
    ns_settings: Settings,
    spawn: Callable[..., Worker],
    video: Path,
    unique: str,
    tmp_path: Path,
) -> None:
    spawn("segment", "--model", MODEL)
    ingest = spawn("ingest", "--read-timeout", "3")
    truncated = truncated_copy(video, tmp_path / "truncated.mp4")
    still = tmp_path / "still.mp4"  # a PNG renamed .mp4
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(still, format="PNG")
    with HlsServer(video) as web:
        specs = {
            "unreachable": f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/cam",
            "not-video": web.not_video_url,
            "truncated": str(truncated),
            "still": str(still),
            "good": str(video),
        }
        for name, url in specs.items():
            put_stream(ns_settings, StreamSpec(id=f"{name}-{unique}", url=url, model=MODEL, fps=5))
        client = make_redis(ns_settings)
        try:
            good = wait_state(client, f"good-{unique}", {"finished"}, 90)
            # backing off after a retry: the first attempt and at least one more were refused
            unreachable = wait_for(
                lambda: (
                    (h := status(client, f"unreachable-{unique}"))
                    and h["state"] == "backoff"
                    and int(h["reconnects"]) >= 1
                    and h
                ),
                30,
                "the unreachable camera to back off after a retry",
            )
            not_video = wait_state(client, f"not-video-{unique}", {"error"}, 30)
            broken = wait_state(client, f"truncated-{unique}", {"error"}, 30)
            image = wait_state(client, f"still-{unique}", {"error", "finished"}, 30)
            got = wait_events(client, f"good-{unique}", 15, 60)
        finally:
            client.close()
    assert good["reason"] == "" and good["frames"] == "15"
    check_events(got, SIZE, count=15)
    assert unreachable["reason"] == "unreachable"
    # a network source's status is its reason's fixed text, never the target's or its URL
    assert unreachable["message"].startswith(FIXED_MESSAGES[Reason.UNREACHABLE])
    assert "hunter2" not in unreachable["message"] and "127.0.0.1" not in unreachable["message"]
    assert not_video["reason"] == "not-video"
    assert not_video["message"] == FIXED_MESSAGES[Reason.NOT_VIDEO]
    # the first half of an MP4 has no index (moov is written last): a damaged video file
    assert broken["reason"] == "decode-error" and "truncated.mp4" in broken["message"]
    assert image["state"] == "error" and image["reason"] == "not-video", image
    assert "hunter2" not in ingest.log()


def test_run_publishes_to_redis_when_asked(
    settings: Settings, video: Path, unique: str, tmp_path: Path, compiled_ops: None
) -> None:
    out = tmp_path / "events.jsonl"
    env = {**os.environ, **settings.env()}
    stream_id = f"run-{unique}"
    argv = ["run", str(video), "--fps", "5", "--stream-id", stream_id, "--redis"]
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *argv, "--output", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    client = make_redis(settings)
    try:
        stored = events(client, stream_id)
        latest = client.get(f"segstream:latest:{stream_id}")
    finally:
        client.close()
    assert len(lines) == len(stored) == 15
    check_events(stored, SIZE, count=15)
    assert latest is not None and decode_event(latest).seq == 14
