"""``segstream demo``: the synthetic camera pushed through the parts that exist today.

It starts the local infrastructure, encodes a synthetic scene as H.264 with PyAV, decodes
it with PyAV, sends each frame as JPEG through Kafka, and on the consuming side segments the
frames with the demo model (``yolact_r18_demo``), encodes the masks as COCO RLE with the
compiled ``masks_to_rle`` and publishes the events to Redis (stream and pub/sub channel),
printing each event with each instance's mask IoU against the scene's ground truth.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from pycocotools import mask as mask_utils

import segcore
from segcore.data import synthetic
from services.common.events import MaskEvent, encode_event
from services.common.frames import decode_frame, encode_frame
from services.common.kafka import (
    ensure_topics,
    frames_spec,
    make_admin,
    make_consumer,
    make_producer,
)
from services.common.metrics import PipelineMetrics
from services.common.redis import make_redis, masks_key
from services.common.settings import Settings
from services.segment.infer import instances_of

MODEL = "yolact_r18_demo"
SIZE = (240, 320)
FPS = 15
MIN_SCORE = 0.3
SEED = 20261126  # a scene the demo model never saw in training


def _iou(mask: np.ndarray, truths: list[np.ndarray]) -> float:
    best = 0.0
    for truth in truths:
        union = np.logical_or(mask, truth).sum()
        if union:
            best = max(best, float(np.logical_and(mask, truth).sum() / union))
    return best


def run_demo(
    settings: Settings, *, frames: int = 90, quiet: bool = False, stream_id: str | None = None
) -> int:
    """Run the demo end to end; 0 when every frame was published and the masks match the
    ground truth (mean IoU > 0.7)."""
    from services.infra import Infra

    say = (lambda *_a, **_k: None) if quiet else print
    Infra(settings).up(log=not quiet)
    metrics = PipelineMetrics()
    if settings.metrics_port:
        port = metrics.serve(settings.host, settings.metrics_port)
        say(f"metrics: http://{settings.host}:{port}/metrics")
    stream_id = stream_id or f"demo-{int(time.time())}"
    spec = frames_spec(settings, MODEL)
    admin = make_admin(settings)
    try:
        ensure_topics(admin, [spec])
    finally:
        admin.close()
    truths = [target for _, target in synthetic.scene(SEED, frames, SIZE)]

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "camera.mp4"
        synthetic.write_video(video, SEED, frames, SIZE, fps=FPS)
        say(f"camera: {frames} frames of H.264 {SIZE[1]}x{SIZE[0]} -> stream {stream_id}")
        producer = make_producer(settings)
        with av.open(str(video)) as container:
            for seq, frame in enumerate(container.decode(video=0)):
                message = encode_frame(
                    stream_id,
                    seq,
                    float(frame.time or 0.0),
                    time.time(),
                    frame.to_ndarray(format="rgb24"),
                )
                record_key, value, headers = message.to_record()
                producer.send(spec.name, key=record_key, value=value, headers=headers)
                metrics.frames_produced.labels(MODEL).inc()
        producer.flush(timeout=30)
        producer.close()

    model = segcore.build(MODEL)
    consumer = make_consumer(settings, spec.name, group_id=f"segment-{MODEL}")
    client = make_redis(settings)
    key = masks_key(stream_id)
    ious: list[float] = []
    seen = 0
    deadline = time.monotonic() + 120
    try:
        while seen < frames and time.monotonic() < deadline:
            records = [
                r
                for batch in consumer.poll(timeout_ms=500, max_records=8).values()
                for r in batch
                if r.key == stream_id.encode()  # other demos' frames share the topic
            ]
            if not records:
                continue
            messages = [decode_frame(r.key, r.value, r.headers) for r in records]
            images = [
                torch.from_numpy(m.image()).permute(2, 0, 1).float().div(255) for m in messages
            ]
            metrics.frames_consumed.labels(MODEL).inc(len(records))
            with torch.inference_mode():
                outputs = model(images)
            names = list(getattr(model, "class_names", []))
            for message, out in zip(messages, outputs, strict=True):
                seq, captured_at = message.seq, message.captured_at
                event = MaskEvent(
                    stream_id=stream_id,
                    seq=seq,
                    pts=message.pts,
                    captured_at=captured_at,
                    published_at=time.time(),
                    model=MODEL,
                    width=message.width,
                    height=message.height,
                    instances=instances_of(out, names, MIN_SCORE),
                )
                payload = encode_event(event)
                entry_id = f"{int(captured_at * 1000)}-{seq}"
                client.xadd(
                    key, {"event": payload}, id=entry_id, maxlen=settings.redis_stream_maxlen
                )
                client.publish(key, payload)
                metrics.events_published.labels(MODEL).inc()
                metrics.capture_to_publish.labels(MODEL).observe(time.time() - captured_at)
                truth = truths[seq]
                frame_ious = [
                    _iou(
                        mask_utils.decode(inst.rle()).astype(bool),
                        [
                            m
                            for m, t in zip(truth["masks"], truth["labels"], strict=True)
                            if t == inst.class_id
                        ],
                    )
                    for inst in event.instances
                ]
                ious.extend(frame_ious)
                seen += 1
                say(
                    f"{entry_id} seq={seq:3d} "
                    + " ".join(
                        f"{i.label}@{i.score:.2f} iou={iou:.2f}"
                        for i, iou in zip(event.instances, frame_ious, strict=True)
                    )
                )
            consumer.commit()
    finally:
        consumer.close()
        stored = client.xlen(key)
        client.close()
    mean_iou = float(np.mean(ious)) if ious else 0.0
    say(f"\n{seen}/{frames} frames segmented by {MODEL}; {stored} events in Redis stream {key}")
    say(f"mean mask IoU of the instances against the scene's ground truth: {mean_iou:.3f}")
    say("the servers keep running: `segstream infra status`, `segstream infra down`")
    return 0 if seen == frames and mean_iou > 0.7 else 1
