"""A synthetic camera whose ground truth is known: textured objects over a textured
background, moving, rotating, scaling and occluding each other.

``scene(seed, num_frames, size=(H, W))`` yields ``(frame, target)`` per frame: ``frame`` is
(H, W, 3) uint8 RGB and ``target`` holds ``labels`` (N,) int64, class indices into
:data:`CLASSES` (the demo model's classes, defined with its config in
``segcore.models.yolact.demo``), and ``masks`` (N, H, W) bool, each object's visible pixels
(occluded parts are not in its mask; a fully hidden object is left out). The same seed gives
the same scene, frame for frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from segcore.models.yolact.demo import CLASSES

# Two tones per class and a texture (stripes, checks, dots, rings, plain).
_PALETTE = {
    "disc": ((220, 60, 50), (250, 150, 120)),
    "square": ((40, 160, 70), (150, 230, 140)),
    "triangle": ((40, 80, 210), (140, 180, 250)),
    "star": ((230, 200, 30), (255, 250, 170)),
    "ring": ((170, 60, 190), (235, 160, 245)),
}


@dataclass(frozen=True)
class _Object:
    label: int
    x: float  # centre, pixels
    y: float
    vx: float
    vy: float
    radius: float
    growth: float  # relative size change per frame
    angle: float
    spin: float  # radians per frame
    phase: float

    def at(self, t: int, height: int, width: int) -> tuple[float, float, float, float]:
        """Centre, radius and angle at frame t, bouncing inside the frame."""
        radius = self.radius * (1.0 + 0.35 * math.sin(self.growth * t + self.phase))
        cx = _bounce(self.x + self.vx * t, radius, width - radius)
        cy = _bounce(self.y + self.vy * t, radius, height - radius)
        return cx, cy, radius, self.angle + self.spin * t


def _bounce(value: float, low: float, high: float) -> float:
    if high <= low:
        return (low + high) / 2
    span = high - low
    p = (value - low) % (2 * span)
    return low + (p if p < span else 2 * span - p)


def _inside(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shape test in the object's own frame (unit radius)."""
    name = CLASSES[label]
    r = np.hypot(u, v)
    if name == "disc":
        return r <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if name == "triangle":
        # Equilateral, vertices on the unit circle.
        inside = v <= 0.5
        for k in (1, 2):
            a = 2 * math.pi * k / 3
            inside &= (u * math.sin(a) + v * math.cos(a)) <= 0.5
        return inside
    if name == "star":
        theta = np.arctan2(v, u)
        return r <= 0.55 + 0.45 * np.abs(np.cos(2.5 * theta))
    return (r <= 1.0) & (r >= 0.55)  # ring


def _texture(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which of the class's two tones each pixel takes."""
    name = CLASSES[label]
    if name == "disc":
        return np.sin(9.0 * u) > 0
    if name == "square":
        return (np.floor(3.0 * (u + 2)) + np.floor(3.0 * (v + 2))) % 2 == 0
    if name == "triangle":
        return (np.hypot((u * 4) % 1 - 0.5, (v * 4) % 1 - 0.5)) < 0.3
    if name == "star":
        return np.sin(12.0 * np.hypot(u, v)) > 0
    return np.sin(7.0 * (u + v)) > 0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(70, 150, size=3)
    fx, fy = rng.uniform(0.01, 0.05, size=2)
    waves = 18 * np.sin(fx * xx + rng.uniform(0, 6)) * np.cos(fy * yy + rng.uniform(0, 6))
    grain = rng.normal(0, 6, size=(height, width))
    bg = base[None, None, :] + (waves + grain)[..., None] * np.array([1.0, 0.9, 0.8])
    return np.clip(bg, 0, 255).astype(np.uint8)


def _objects(rng: np.random.Generator, height: int, width: int) -> list[_Object]:
    count = int(rng.integers(3, 8))
    scale = min(height, width)
    objects = []
    for _ in range(count):
        radius = float(rng.uniform(0.07, 0.18) * scale)
        speed = float(rng.uniform(0.004, 0.02) * scale)
        heading = float(rng.uniform(0, 2 * math.pi))
        objects.append(
            _Object(
                label=int(rng.integers(0, len(CLASSES))),
                x=float(rng.uniform(radius, width - radius)),
                y=float(rng.uniform(radius, height - radius)),
                vx=speed * math.cos(heading),
                vy=speed * math.sin(heading),
                radius=radius,
                growth=float(rng.uniform(0.02, 0.08)),
                angle=float(rng.uniform(0, 2 * math.pi)),
                spin=float(rng.uniform(-0.08, 0.08)),
                phase=float(rng.uniform(0, 2 * math.pi)),
            )
        )
    return objects


def render(
    objects: list[_Object], background: np.ndarray, t: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frame t: objects drawn in list order (later ones in front)."""
    height, width = background.shape[:2]
    frame = background.copy()
    owner = np.full((height, width), -1, dtype=np.int64)
    for index, obj in enumerate(objects):
        cx, cy, radius, angle = obj.at(t, height, width)
        x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, width)
        y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, height)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dx, dy = (xx + 0.5 - cx) / radius, (yy + 0.5 - cy) / radius
        cos, sin = math.cos(angle), math.sin(angle)
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        inside = _inside(obj.label, u, v)
        tone = _texture(obj.label, u, v)
        dark, light = (np.array(c, dtype=np.uint8) for c in _PALETTE[CLASSES[obj.label]])
        patch = frame[y0:y1, x0:x1]
        patch[inside & tone] = light
        patch[inside & ~tone] = dark
        owner[y0:y1, x0:x1][inside] = index
    labels, masks = [], []
    for index, obj in enumerate(objects):
        visible = owner == index
        if visible.any():
            labels.append(obj.label)
            masks.append(visible)
    target = {
        "labels": np.array(labels, dtype=np.int64),
        "masks": np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool),
    }
    return frame, target


def frame(
    seed: int, t: int, size: tuple[int, int] = (240, 320)
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frame ``t`` of scene ``seed`` alone (the same as the scene's t-th item)."""
    rng = np.random.default_rng(seed)
    background = _background(rng, *size)
    return render(_objects(rng, *size), background, t)


def scene(
    seed: int, num_frames: int, size: tuple[int, int] = (240, 320)
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The frames of scene ``seed`` with their ground truth (see the module docstring)."""
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    height, width = size
    if height < 16 or width < 16:
        raise ValueError(f"size must be at least 16x16, got {size}")
    rng = np.random.default_rng(seed)
    background = _background(rng, height, width)
    objects = _objects(rng, height, width)
    for t in range(num_frames):
        yield render(objects, background, t)


def frames_of(
    seeds: Iterable[int], frames_per_scene: int, size: tuple[int, int], stride: int = 1
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Every ``stride``-th frame of each scene, scene after scene."""
    for seed in seeds:
        for t, item in enumerate(scene(seed, frames_per_scene, size)):
            if t % stride == 0:
                yield item


def write_video(
    path: str | Path, seed: int, num_frames: int, size: tuple[int, int] = (240, 320), fps: int = 15
) -> Path:
    """Encode scene ``seed`` as H.264 (PyAV) and write its ground truth beside it as COCO
    annotations (``<path>.json``, image ids = frame numbers + 1); returns the JSON path."""
    import av

    from segcore.data.coco import write_coco

    path = Path(path)
    frames = list(scene(seed, num_frames, size))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for t, (frame, _) in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = t
            video_frame.time_base = Fraction(1, fps)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    folder = path.with_suffix("")
    written = write_coco(frames, folder, CLASSES, write_images=False)
    target = path.with_suffix(".json")
    written.replace(target)
    (folder / "images").rmdir()
    folder.rmdir()
    return target


def live(
    seed: int, fps: float = 15.0, size: tuple[int, int] = (240, 320)
) -> Iterator[tuple[float, np.ndarray]]:
    """The scene as a live camera: ``(capture time, frame)`` at ``fps``, forever (the scene
    restarts every 10 minutes of frames)."""
    period = 1.0 / fps
    cycle = int(600 * fps)
    rng = np.random.default_rng(seed)
    background = _background(rng, *size)
    objects = _objects(rng, *size)
    next_time = time.monotonic()
    t = 0
    while True:
        frame, _ = render(objects, background, t % cycle)
        delay = next_time - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield time.time(), frame
        next_time += period
        t += 1
