"""`segstream run`: a real H.264 file through PyAV, the demo model and JSON lines."""

from __future__ import annotations

import io
import queue
import threading
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segcore.data import synthetic
from services.cli import main
from services.common.events import decode_event
from services.pipeline.run import _END, RunOptions, SourceError, redact, run, take_batch
from services.segment.infer import Item

SIZE = (240, 320)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "camera.mp4"
    synthetic.write_video(path, seed=77, num_frames=45, size=SIZE, fps=15)
    return path


def test_samples_to_the_target_fps_and_segments(video: Path, compiled_ops: None) -> None:
    out = io.StringIO()
    stats = run(RunOptions(source=str(video), model="yolact_r18_demo", fps=5.0), out)
    events = [decode_event(line) for line in out.getvalue().splitlines()]
    # 45 frames at 15 fps = 3 s; sampled at 5 fps: frames 0, 3, 6, ... (15 of them).
    assert len(events) == stats.published == stats.sampled == 15
    assert [e.seq for e in events] == list(range(15))
    assert [round(e.pts * 15) for e in events] == list(range(0, 45, 3))
    truth = list(synthetic.scene(77, 45, SIZE))
    ious = []
    for event in events:
        assert (event.height, event.width) == SIZE
        frame_truth = truth[round(event.pts * 15)][1]
        for inst in event.instances:
            mask = mask_utils.decode(inst.rle()).astype(bool)
            assert mask.shape == SIZE
            candidates = [
                m
                for m, label in zip(frame_truth["masks"], frame_truth["labels"], strict=True)
                if label == inst.class_id
            ]
            best = max(
                (np.logical_and(mask, m).sum() / np.logical_or(mask, m).sum() for m in candidates),
                default=0.0,
            )
            ious.append(best)
    assert ious and float(np.mean(ious)) > 0.7


def test_max_frames_and_every_frame(video: Path, compiled_ops: None) -> None:
    out = io.StringIO()
    stats = run(RunOptions(source=str(video), model="yolact_r18_demo", max_frames=7), out)
    assert stats.published == 7 and len(out.getvalue().splitlines()) == 7


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SourceError, match="no such file"):
        run(RunOptions(source=str(tmp_path / "nope.mp4"), model="yolact_r18_demo"))
    assert main(["run", str(tmp_path / "nope.mp4")]) == 1
    assert "nope.mp4: no such file" in capsys.readouterr().err


def test_not_a_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        run(RunOptions(source=str(junk), model="yolact_r18_demo"))


def test_unreachable_camera_names_it_without_credentials() -> None:
    url = "rtsp://admin:hunter2@127.0.0.1:9/stream"
    with pytest.raises(SourceError) as err:
        run(RunOptions(source=url, model="yolact_r18_demo", open_timeout_s=2, read_timeout_s=2))
    assert "hunter2" not in str(err.value) and "rtsp://***@127.0.0.1:9/stream" in str(err.value)


def test_redact() -> None:
    assert redact("rtsp://u:p@cam/x") == "rtsp://***@cam/x"
    assert redact("https://cam.example/live.m3u8") == "https://cam.example/live.m3u8"


def test_cli_writes_json_lines(video: Path, tmp_path: Path, compiled_ops: None) -> None:
    out = tmp_path / "events.jsonl"
    assert main(["run", str(video), "--fps", "3", "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 9


def _item(seq: int) -> Item:
    return Item("cam", seq, seq / 5, 0.0, np.zeros((2, 2, 3), np.uint8))


def test_take_batch_without_waiting_takes_only_what_is_queued() -> None:
    frames: queue.Queue[object] = queue.Queue()
    frames.put(_item(0))
    frames.put(_item(1))
    later = threading.Timer(0.5, frames.put, args=(_item(2),))
    later.start()
    try:
        batch, ended = take_batch(frames, 4, wait_s=0.0)
    finally:
        later.join()
    assert [i.seq for i in batch] == [0, 1]  # not the frame that came after
    assert not ended
    frames.put(_END)
    batch, ended = take_batch(frames, 4, wait_s=0.0)
    assert [i.seq for i in batch] == [2]
    assert ended


def test_take_batch_waits_for_frames_that_come_within_the_wait() -> None:
    frames: queue.Queue[object] = queue.Queue()
    frames.put(_item(0))

    def more() -> None:
        frames.put(_item(1))
        frames.put(_item(2))

    later = threading.Timer(0.05, more)
    later.start()
    try:
        batch, ended = take_batch(frames, 3, wait_s=30.0)  # returns once the batch is full
    finally:
        later.join()
    assert [i.seq for i in batch] == [0, 1, 2]
    assert not ended
