"""``segstream demo``: from nothing to mask events on screen with one command.

It starts the local infrastructure (what is not running yet), then the API, one ingest worker
and one segment worker as child processes, registers a synthetic camera (an H.264 video of
the demo scene played in real time, looping) with the demo model, prints the address of the
viewer page (the camera with masks, labels and scores, updated live, and each stream's
health) and prints events as they arrive with each instance's mask IoU against the scene's
ground truth. Ctrl-C (or ``--events N``) stops the children and the servers it started,
leaving no process behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
import numpy as np
from pycocotools import mask as mask_utils

from segcore.data import synthetic
from services.common.settings import Settings
from services.infra.errors import InfraError
from services.infra.process import free_port, port_in_use

MODEL = "yolact_r18_demo"
SIZE = (240, 320)
FPS = 15
FRAMES = 150  # a 10 s loop
SEED = 20261126  # a scene the demo model never saw in training
CAMERA = "demo-camera"
ROOT = Path(__file__).resolve().parents[1]


def _iou(mask: np.ndarray, truths: list[np.ndarray]) -> float:
    best = 0.0
    for truth in truths:
        union = np.logical_or(mask, truth).sum()
        if union:
            best = max(best, float(np.logical_and(mask, truth).sum() / union))
    return best


class Children:
    """The demo's worker processes, each in its own session, logs in the run folder."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []

    def start(self, name: str, *args: str, metrics_port: int) -> None:
        log = (self.log_dir / f"demo-{name}.log").open("ab")
        self.logs.append(log)
        env = {**self.env, "SEGSTREAM_METRICS_PORT": str(metrics_port)}
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", name, *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise InfraError(
                    f"the demo's {name} process exited with {proc.returncode}",
                    f"see {self.log_dir / f'demo-{name}.log'}",
                )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for log in self.logs:
            log.close()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, *, events: int | None = None, quiet: bool = False) -> int:
    """Run the demo until Ctrl-C or ``events`` events; 0 when events came and their masks
    match the scene's ground truth (mean IoU > 0.7)."""
    from services.client import ApiError, Client
    from services.infra import Infra

    say = (lambda *_a, **_k: None) if quiet else print
    if port_in_use(settings.host, settings.api_port):
        raise InfraError(
            f"port {settings.api_port} on {settings.host} (the API) is in use",
            "stop that process or pick a free port with SEGSTREAM_API_PORT=<port>",
        )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    infra = Infra(settings)
    started = infra.up(log=not quiet)
    token = secrets.token_urlsafe(24)
    ports = [settings.metrics_port + k if settings.metrics_port else free_port() for k in range(3)]
    children = Children(
        {
            **os.environ,
            **settings.env(),
            "SEGSTREAM_API_TOKENS": json.dumps(
                [{"name": "demo", "token": token, "scopes": ["streams:write", "events:read"]}]
            ),
            "SEGSTREAM_API_ALLOW_FILES": "true",
            "SEGSTREAM_PREVIEW_FRAMES": "100",
        },
        infra.log_dir,
    )
    seen, ious = 0, []
    try:
        video = settings.cache_dir / "demo" / f"camera-{SEED}.mp4"
        if not video.is_file():
            video.parent.mkdir(parents=True, exist_ok=True)
            synthetic.write_video(video, SEED, FRAMES, SIZE, fps=FPS)
        truths = [target for _, target in synthetic.scene(SEED, FRAMES, SIZE)]
        children.start("api", metrics_port=ports[0])
        children.start("ingest", metrics_port=ports[1])
        children.start("segment", "--model", MODEL, metrics_port=ports[2])
        api = f"http://{settings.host}:{settings.api_port}"
        say(f"- starting the API, an ingest and a segment worker (logs in {infra.log_dir})")
        deadline = time.monotonic() + 120
        while True:
            children.check()
            try:
                if httpx.get(f"{api}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise InfraError("the API did not become ready in 120 s", "see demo-api.log")
            time.sleep(0.5)
        with Client(api, token) as client:
            spec = {"fps": 5, "realtime": True, "loop": True}
            try:
                client.add(str(video), MODEL, id=CAMERA, **spec)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                client.update(CAMERA, url=str(video), model=MODEL, **spec)
            say(f"\ncamera: {CAMERA}, H.264 {SIZE[1]}x{SIZE[0]} at {FPS} fps, segmented at 5 fps")
            say(f"viewer: {api}/viewer?access_token={token}&stream={CAMERA}")
            say(f"API:    {api}/docs  (token: {token})")
            say("metrics: " + ", ".join(f"http://{settings.host}:{p}/metrics" for p in ports))
            say("Ctrl-C stops everything the demo started.\n")
            for item in client.subscribe(CAMERA, receive_timeout_s=120):
                event = item.event
                truth = truths[round(event.pts * FPS) % FRAMES]
                frame_ious = [
                    _iou(
                        mask_utils.decode(inst.rle()).astype(bool),
                        [
                            m
                            for m, c in zip(truth["masks"], truth["labels"], strict=True)
                            if c == inst.class_id
                        ],
                    )
                    for inst in event.instances
                ]
                ious.extend(frame_ious)
                seen += 1
                say(
                    f"{item.id} seq={event.seq:4d} "
                    + " ".join(
                        f"{i.label}@{i.score:.2f} iou={v:.2f}"
                        for i, v in zip(event.instances, frame_ious, strict=True)
                    ),
                    flush=True,
                )
                if events is not None and seen >= events:
                    break
    except KeyboardInterrupt:
        say("\nstopping")
    finally:
        children.stop()
        stopped = [
            c.name for c in reversed(infra.components) if c.name in started and c.proc.stop()
        ]
        if stopped:
            say("stopped: " + ", ".join(stopped))
        signal.signal(signal.SIGTERM, previous)
    mean_iou = float(np.mean(ious)) if ious else 0.0
    say(f"{seen} events; mean mask IoU against the scene's ground truth: {mean_iou:.3f}")
    return 0 if seen and mean_iou > 0.7 else 1
