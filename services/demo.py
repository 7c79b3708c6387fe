"""``segstream demo``: a synthetic camera pushed through the parts that exist today.

It starts the local infrastructure, renders a short H.264 video of moving objects with
PyAV, decodes it with PyAV, sends each frame as JPEG through Kafka, and on the consuming side
segments the objects, pastes their masks at frame resolution with the compiled
``paste_masks`` op, encodes them as COCO RLE with the compiled ``masks_to_rle`` and
publishes the events to Redis (stream and pub/sub channel), printing each event and its
mask IoU against the rendered ground truth.

The segmenter is a colour key: the demo's objects have known colours. It stands in for the
instance-segmentation models until they land; everything around it is the real path.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from torchvision.ops import roi_align

from segcore.ops import masks_to_rle, paste_masks
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

MODEL = "demo_colour_key"
WIDTH, HEIGHT, FPS = 640, 360, 15
MASK_SIZE = 28


@dataclass(frozen=True)
class DemoObject:
    label: str
    class_id: int
    colour: tuple[int, int, int]
    radius: int
    start: tuple[float, float]
    velocity: tuple[float, float]
    square: bool


OBJECTS = (
    DemoObject("ball", 1, (220, 40, 40), 40, (100.0, 120.0), (7.0, 3.0), False),
    DemoObject("crate", 2, (40, 200, 60), 45, (420.0, 200.0), (-5.0, 4.0), True),
    DemoObject("puck", 3, (40, 70, 230), 30, (300.0, 80.0), (4.0, -6.0), False),
)


def _position(obj: DemoObject, t: int) -> tuple[int, int]:
    """Centre of ``obj`` at frame ``t``, bouncing off the frame's edges."""
    out = []
    for start, vel, size in zip(obj.start, obj.velocity, (WIDTH, HEIGHT), strict=True):
        span = size - 2 * obj.radius
        p = (start - obj.radius + vel * t) % (2 * span)
        out.append(int(obj.radius + (p if p < span else 2 * span - p)))
    return out[0], out[1]


def render(t: int, background: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frame ``t`` (H, W, 3) uint8 RGB and each object's visible mask (H, W) bool."""
    frame = background.copy()
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    truth: dict[str, np.ndarray] = {}
    for obj in OBJECTS:  # later objects occlude earlier ones
        cx, cy = _position(obj, t)
        if obj.square:
            inside = (abs(xx - cx) <= obj.radius) & (abs(yy - cy) <= obj.radius)
        else:
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= obj.radius**2
        for seen in truth.values():
            seen &= ~inside
        truth[obj.label] = inside
        frame[inside] = obj.colour
    return frame, truth


def write_video(path: Path, frames: int) -> list[dict[str, np.ndarray]]:
    """Encode the synthetic camera as H.264 with PyAV; return the ground truth per frame."""
    rng = np.random.default_rng(0)
    background = (110 + rng.integers(-25, 25, size=(HEIGHT, WIDTH, 1))).repeat(3, axis=2)
    background = background.astype(np.uint8)
    truths = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for t in range(frames):
            frame, truth = render(t, background)
            truths.append(truth)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = t
            video_frame.time_base = Fraction(1, FPS)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return truths


@dataclass(frozen=True)
class Instance:
    label: str
    class_id: int
    score: float
    box: list[float]
    mask: np.ndarray  # (H, W) bool at frame resolution
    rle: dict[str, object]  # COCO RLE of the mask

    @property
    def counts(self) -> str:
        counts = self.rle["counts"]
        assert isinstance(counts, bytes)
        return counts.decode("ascii")

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, 4),
            "box": [round(v, 1) for v in self.box],
            "mask": {"size": self.rle["size"], "counts": self.counts},
        }


def segment(image: torch.Tensor) -> list[Instance]:
    """Instances of the demo objects in a (3, H, W) uint8 frame, masks at frame resolution."""
    height, width = image.shape[1:]
    pixels = image.permute(1, 2, 0).to(torch.int32)
    found: list[Instance] = []
    for obj in OBJECTS:
        colour = torch.tensor(obj.colour, dtype=torch.int32)
        key = ((pixels - colour).abs().sum(dim=2) < 90).to(torch.float32)
        ys, xs = torch.nonzero(key, as_tuple=True)
        if ys.numel() < 30:
            continue
        box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).to(torch.float32)
        # Mask-head shaped output: a MASK_SIZE square per box, pasted back by the custom op.
        crop = roi_align(key[None, None], [box[None]], MASK_SIZE, aligned=True)
        full = paste_masks(crop, box[None], (height, width), threshold=0.5)[:, 0]
        [rle] = masks_to_rle(full)
        inside = crop[crop > 0.5]
        score = float(inside.mean()) if inside.numel() else 0.0
        found.append(Instance(obj.label, obj.class_id, score, box.tolist(), full[0].numpy(), rle))
    return found


def _iou(mask: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(mask, truth).sum()
    return float(np.logical_and(mask, truth).sum() / union) if union else 1.0


def run_demo(
    settings: Settings, *, frames: int = 90, quiet: bool = False, stream_id: str | None = None
) -> int:
    """Run the demo end to end; 0 when every frame was segmented with mean mask IoU > 0.9."""
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

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "camera.mp4"
        truths = write_video(video, frames)
        say(f"camera: {frames} frames of H.264 {WIDTH}x{HEIGHT} -> stream {stream_id}")
        producer = make_producer(settings)
        with av.open(str(video)) as container:
            for seq, frame in enumerate(container.decode(video=0)):
                buffer = io.BytesIO()
                frame.to_image().save(buffer, format="JPEG", quality=90)
                headers = [
                    ("seq", str(seq).encode()),
                    ("pts", repr(float(frame.time or 0.0)).encode()),
                    ("captured_at", repr(time.time()).encode()),
                ]
                producer.send(
                    spec.name, key=stream_id.encode(), value=buffer.getvalue(), headers=headers
                )
                metrics.frames_produced.labels(MODEL).inc()
        producer.flush(timeout=30)
        producer.close()

    consumer = make_consumer(settings, spec.name, group_id=f"segment-{MODEL}")
    client = make_redis(settings)
    key = masks_key(stream_id)
    ious: list[float] = []
    seen = 0
    deadline = time.monotonic() + 60
    try:
        while seen < frames and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key != stream_id.encode():
                        continue  # an earlier demo's frames
                    head = {k: v.decode() for k, v in record.headers}
                    metrics.frames_consumed.labels(MODEL).inc()
                    rgb = np.array(Image.open(io.BytesIO(record.value)).convert("RGB"))
                    image = torch.from_numpy(rgb).permute(2, 0, 1)
                    instances = segment(image)
                    seq, captured_at = int(head["seq"]), float(head["captured_at"])
                    event = {
                        "v": 1,
                        "stream_id": stream_id,
                        "seq": seq,
                        "pts": float(head["pts"]),
                        "captured_at": captured_at,
                        "published_at": time.time(),
                        "model": MODEL,
                        "width": int(image.shape[2]),
                        "height": int(image.shape[1]),
                        "instances": [i.to_json() for i in instances],
                    }
                    payload = json.dumps(event, separators=(",", ":"))
                    entry_id = f"{int(captured_at * 1000)}-{seq}"
                    client.xadd(
                        key, {"event": payload}, id=entry_id, maxlen=settings.redis_stream_maxlen
                    )
                    client.publish(key, payload)
                    metrics.events_published.labels(MODEL).inc()
                    metrics.capture_to_publish.labels(MODEL).observe(time.time() - captured_at)
                    frame_ious = [_iou(i.mask, truths[seq][i.label]) for i in instances]
                    ious.extend(frame_ious)
                    seen += 1
                    say(
                        f"{entry_id} seq={seq:3d} "
                        + " ".join(
                            f"{i.label}@{i.score:.2f} iou={iou:.3f}"
                            for i, iou in zip(instances, frame_ious, strict=True)
                        )
                    )
            consumer.commit()
    finally:
        consumer.close()
        stored = client.xlen(key)
        client.close()
    mean_iou = float(np.mean(ious)) if ious else 0.0
    say(f"\n{seen}/{frames} frames segmented; {stored} events in Redis stream {key}")
    say(f"mean mask IoU against the rendered ground truth: {mean_iou:.3f}")
    say("the servers keep running: `segstream infra status`, `segstream infra down`")
    return 0 if seen == frames and mean_iou > 0.9 else 1
