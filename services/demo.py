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

import secrets
import signal
import time
from types import FrameType

import httpx
import numpy as np
from pycocotools import mask as mask_utils

from segcore.data import synthetic
from services.common.settings import ApiToken, Settings
from services.infra.children import Child, stop_all
from services.infra.errors import InfraError
from services.infra.process import free_port, port_in_use

MODEL = "yolact_r18_demo"
SIZE = (240, 320)
FPS = 15
FRAMES = 150  # a 10 s loop
SEED = 20261126  # a scene the demo model never saw in training
CAMERA = "demo-camera"


def _iou(mask: np.ndarray, truths: list[np.ndarray]) -> float:
    best = 0.0
    for truth in truths:
        union = np.logical_or(mask, truth).sum()
        if union:
            best = max(best, float(np.logical_and(mask, truth).sum() / union))
    return best


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(
    settings: Settings, *, events: int | None = None, quiet: bool = False, model: str = MODEL
) -> int:
    """Run the demo until Ctrl-C or ``events`` events; 0 when events came and their masks
    match the scene's ground truth (mean IoU > 0.7). ``model``: the registered model the
    camera is segmented with (one trained on the synthetic camera's classes: a ``*_demo``)."""
    import segcore

    if model not in segcore.list_models():
        raise ValueError(
            f"unknown model {model!r}; known models: {', '.join(segcore.list_models())}"
        )
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
    child_settings = settings.model_copy(
        update={
            "api_tokens": [ApiToken(name="demo", token=token)],  # every scope
            "api_allow_files": True,
            "file_root": settings.cache_dir / "demo",
            "preview_frames": 100,
        }
    )
    children: list[Child] = []
    seen, ious = 0, []
    try:
        video = settings.cache_dir / "demo" / f"camera-{SEED}.mp4"
        if not video.is_file():
            video.parent.mkdir(parents=True, exist_ok=True)
            synthetic.write_video(video, SEED, FRAMES, SIZE, fps=FPS)
        truths = [target for _, target in synthetic.scene(SEED, FRAMES, SIZE)]
        commands = {"api": [], "ingest": [], "segment": ["--model", model]}
        for (name, args), port in zip(commands.items(), ports, strict=True):
            log = infra.log_dir / f"demo-{name}.log"
            children.append(
                Child(name, [name, *args], child_settings, log, metrics_port=port, append=True)
            )
        api = f"http://{settings.host}:{settings.api_port}"
        say(f"- starting the API, an ingest and a segment worker (logs in {infra.log_dir})")
        deadline = time.monotonic() + 120
        while True:
            for child in children:
                child.check()
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
                client.add(str(video), model, id=CAMERA, **spec)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                client.update(CAMERA, url=str(video), model=model, **spec)
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
        stop_all(children, timeout=20)
        stopped = [
            c.name for c in reversed(infra.components) if c.name in started and c.proc.stop()
        ]
        if stopped:
            say("stopped: " + ", ".join(stopped))
        signal.signal(signal.SIGTERM, previous)
    mean_iou = float(np.mean(ious)) if ious else 0.0
    say(f"{seen} events; mean mask IoU against the scene's ground truth: {mean_iou:.3f}")
    return 0 if seen and mean_iou > 0.7 else 1
