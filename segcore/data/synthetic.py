"""A synthetic camera whose ground truth is known: textured objects over a textured
background, moving, rotating, scaling and occluding each other.

``scene(seed, num_frames, size=(H, W))`` yields ``(frame, target)`` per frame: ``frame`` is
(H, W, 3) uint8 RGB and ``target`` holds ``labels`` (N,) int64, class indices into
:data:`CLASSES` (the demo model's classes, defined with its config in
``segcore.models.yolact.demo``), ``masks`` (N, H, W) bool, each object's visible pixels
(occluded parts are not in its mask; a fully hidden object is left out), and ``ids`` (N,)
int64, each object's identity (1, 2, ...: the same object has the same id on every frame of
its scene). The same seed gives the same scene, frame for frame.

``tracking_scene(seed, num_frames, size)`` is a camera for tracking: objects move in straight
lines through the frame (they enter from outside it and leave it), a small object passes
fully behind a large one for a few frames, paths cross, and the scene carries lines and a
zone with their ground truth (:class:`TrackingScene`). It draws from a random stream of its
own, so a seed's :func:`scene` is the same as without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, partial
from pathlib import Path
from typing import Protocol

import numpy as np
from pycocotools import mask as mask_utils

from segcore.models.yolact.demo import CLASSES
from segcore.tracking.analytics import Line, Zone

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


class _Drawn(Protocol):
    @property
    def label(self) -> int: ...

    def at(self, t: int, height: int, width: int) -> tuple[float, float, float, float]: ...


def render(
    objects: Sequence[_Drawn], background: np.ndarray, t: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frame t: objects drawn in list order (later ones in front); object k has id k + 1."""
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
    labels, masks, ids = [], [], []
    for index, obj in enumerate(objects):
        visible = owner == index
        if visible.any():
            labels.append(obj.label)
            masks.append(visible)
            ids.append(index + 1)
    target = {
        "labels": np.array(labels, dtype=np.int64),
        "masks": np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool),
        "ids": np.array(ids, dtype=np.int64),
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


# -- the tracking camera --------------------------------------------------------------------

#: Added to a seed for the tracking camera's random stream (``default_rng((TRACKING_STREAM,
#: seed))``), so its scenes share nothing with :func:`scene`'s of the same seed.
TRACKING_STREAM = 0x7AC4
_OCCLUDERS = tuple(CLASSES.index(name) for name in ("disc", "square"))  # shapes with no hole
_LINE_END_MARGIN = 0.2  # paths meet lines at least this far (of the segment) from its ends
_LEAST_CROSSING_ANGLE = math.radians(30)  # between a path and a line it crosses


@dataclass(frozen=True)
class _Mover:
    """An object on a straight path: centre ``(x + vx t, y + vy t)``, no bouncing."""

    label: int
    x: float  # centre at frame 0, pixels (may lie outside the frame)
    y: float
    vx: float
    vy: float
    radius: float
    growth: float
    angle: float
    spin: float
    phase: float

    def at(self, t: int, height: int, width: int) -> tuple[float, float, float, float]:
        radius = self.radius * (1.0 + 0.1 * math.sin(self.growth * t + self.phase))
        return self.x + self.vx * t, self.y + self.vy * t, radius, self.angle + self.spin * t

    def centre(self, t: int) -> tuple[float, float]:
        return self.x + self.vx * t, self.y + self.vy * t


@dataclass(frozen=True)
class Crossing:
    """Object ``track_id``'s centre crossed line ``line`` between frames ``frame - 1`` and
    ``frame``; ``direction``: ``"forward"`` from the left of ``a -> b`` to its right (image
    coordinates, y down), else ``"backward"``."""

    track_id: int
    line: str
    frame: int
    direction: str


@dataclass(frozen=True)
class Visit:
    """Object ``track_id`` in zone ``zone`` from frame ``enter`` until frame ``exit`` (the
    first frame it is seen out again; None: still in at the scene's end)."""

    track_id: int
    zone: str
    enter: int
    exit: int | None

    def dwell_frames(self, num_frames: int) -> int:
        return (num_frames if self.exit is None else self.exit) - self.enter


@dataclass(frozen=True)
class TrackingScene:
    """A scene of :func:`tracking_scene`: its frames with their targets (``labels``,
    ``masks``, ``ids`` as :func:`scene`'s, and ``visible`` (N,) float64, the share of each
    object's whole shape that is seen: not hidden by others nor outside the frame), its
    lines and zones (normalised coordinates) and their ground truth: ``crossings`` by each
    object's true centre (the centre of its shape, hidden or not), in frame order, and
    ``visits``, an object being in a zone on a frame where it is seen with at least the
    zone's ``min_fraction`` of its visible mask inside the polygon (a frame it is hidden on
    keeps what it was); ``hidden`` lists, per object id, the frames in the middle of its
    life (seen before and after) on which it is fully hidden behind others."""

    seed: int
    size: tuple[int, int]
    frames: tuple[tuple[np.ndarray, dict[str, np.ndarray]], ...]
    lines: tuple[Line, ...]
    zones: tuple[Zone, ...]
    crossings: tuple[Crossing, ...]
    visits: tuple[Visit, ...]
    hidden: dict[int, tuple[int, ...]]

    def line_counts(self) -> dict[str, dict[str, int]]:
        """``{line: {"forward": n, "backward": n}}`` of the ground truth."""
        counts = {x.name: {"forward": 0, "backward": 0} for x in self.lines}
        for crossing in self.crossings:
            counts[crossing.line][crossing.direction] += 1
        return counts


def _cross(line: Line, px: float, py: float, width: int, height: int) -> float:
    """(b - a) x (p - a) in pixels: > 0 right of a -> b as the image shows it (y down)."""
    ax, ay, bx, by = line.a[0] * width, line.a[1] * height, line.b[0] * width, line.b[1] * height
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


def _meets(
    line: Line, p: tuple[float, float], q: tuple[float, float], width: int, height: int
) -> float | None:
    """Where the line through a and b meets the step p -> q (pixels): the position along
    a -> b (0 at a, 1 at b), or None when the step is parallel to it."""
    ax, ay, bx, by = line.a[0] * width, line.a[1] * height, line.b[0] * width, line.b[1] * height
    dx, dy = bx - ax, by - ay
    sx, sy = q[0] - p[0], q[1] - p[1]
    denom = sx * dy - sy * dx
    if denom == 0:
        return None
    return ((ax - p[0]) * sy - (ay - p[1]) * sx) / denom


def _path_fits(mover: _Mover, lines: Sequence[Line], width: int, height: int) -> bool:
    """Whether the mover's path, where it meets each line, does so clearly inside the
    segment and at a clear angle (so a crossing is not a matter of how the reference point
    is taken)."""
    p = mover.centre(0)
    q = mover.centre(1)
    for line in lines:
        u = _meets(line, p, q, width, height)
        if u is None:
            return False
        dx, dy = (line.b[0] - line.a[0]) * width, (line.b[1] - line.a[1]) * height
        cos = abs(dx * mover.vx + dy * mover.vy) / (
            math.hypot(dx, dy) * math.hypot(mover.vx, mover.vy)
        )
        if math.acos(min(cos, 1.0)) < _LEAST_CROSSING_ANGLE:
            return False
        if (
            -_LINE_END_MARGIN < u < _LINE_END_MARGIN
            or 1 - _LINE_END_MARGIN < u < 1 + _LINE_END_MARGIN
        ):
            return False
    return True


def _through(
    rng: np.random.Generator,
    label: int,
    radius: float,
    point: tuple[float, float],
    at: float,
    heading: float,
    speed: float,
) -> _Mover:
    """A mover whose centre is at ``point`` at frame ``at``."""
    vx, vy = speed * math.cos(heading), speed * math.sin(heading)
    return _Mover(
        label=label,
        x=point[0] - vx * at,
        y=point[1] - vy * at,
        vx=vx,
        vy=vy,
        radius=radius,
        growth=float(rng.uniform(0.02, 0.08)),
        angle=float(rng.uniform(0, 2 * math.pi)),
        spin=float(rng.uniform(-0.06, 0.06)),
        phase=float(rng.uniform(0, 2 * math.pi)),
    )


def _tracking_lines(rng: np.random.Generator) -> tuple[Line, ...]:
    """A near-vertical and a near-horizontal line, each across the whole frame."""
    return (
        Line("vertical", (float(rng.uniform(0.4, 0.6)), 0.0), (float(rng.uniform(0.4, 0.6)), 1.0)),
        Line(
            "horizontal", (0.0, float(rng.uniform(0.4, 0.6))), (1.0, float(rng.uniform(0.4, 0.6)))
        ),
    )


def _tracking_zone(rng: np.random.Generator) -> Zone:
    """A quadrilateral in one quarter of the frame."""
    x0, y0 = float(rng.choice([0.08, 0.55])), float(rng.choice([0.08, 0.55]))
    corners = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
    polygon = tuple(
        (
            round(x0 + cx * 0.37 + float(rng.uniform(-0.03, 0.03)), 4),
            round(y0 + cy * 0.37 + float(rng.uniform(-0.03, 0.03)), 4),
        )
        for cx, cy in corners
    )
    return Zone("zone", polygon, min_fraction=0.5)


def _tracking_movers(
    rng: np.random.Generator, num_frames: int, height: int, width: int, lines: Sequence[Line]
) -> list[_Mover]:
    """The scene's objects in depth order (later ones in front): an occluder pair (a small
    object that passes fully behind a large disc or square), a pair whose paths cross
    (alike in size, often of one class) and objects that come in through the frame's edges
    at different times. Every path meets the lines clearly (:func:`_path_fits`)."""
    scale = min(height, width)
    span = max(num_frames - 1, 1)

    def fitted(make: Callable[[], _Mover]) -> _Mover:
        for _ in range(200):
            mover = make()
            if _path_fits(mover, lines, width, height):
                return mover
        return mover

    def central() -> tuple[float, float]:
        return float(rng.uniform(0.3, 0.7) * width), float(rng.uniform(0.3, 0.7) * height)

    back: list[_Mover] = []
    front: list[_Mover] = []
    # The occlusion: both centres meet at `point` at frame `at`, on paths that cross.
    point, at = central(), float(rng.uniform(0.35, 0.65) * span)
    heading = float(rng.uniform(0, 2 * math.pi))
    small_label = int(rng.integers(0, len(CLASSES)))
    small = fitted(
        lambda: _through(
            rng,
            small_label,
            float(rng.uniform(0.07, 0.085) * scale),
            point,
            at,
            float(rng.uniform(0, 2 * math.pi)),
            float(rng.uniform(0.014, 0.02) * scale),
        )
    )
    heading = math.atan2(small.vy, small.vx)
    big_label = int(rng.choice(_OCCLUDERS))
    big = fitted(
        lambda: _through(
            rng,
            big_label,
            float(rng.uniform(0.16, 0.18) * scale),
            point,
            at,
            heading + float(rng.choice([-1, 1]) * rng.uniform(0.6, 1.0) * math.pi),
            float(rng.uniform(0.008, 0.012) * scale),
        )
    )
    back.append(small)
    front.append(big)
    # Crossing paths: two objects alike in size meeting at a point, mostly of one class.
    point, at = central(), float(rng.uniform(0.3, 0.7) * span)
    label = int(rng.integers(0, len(CLASSES)))

    def crosser(label: int, at: float) -> _Mover:
        radius = float(rng.uniform(0.09, 0.12) * scale)
        heading = float(rng.uniform(0, 2 * math.pi))
        return _through(rng, label, radius, point, at, heading, rng.uniform(0.01, 0.016) * scale)

    for k in range(2):
        other = label if rng.random() < 0.6 else int(rng.integers(0, len(CLASSES)))
        mover = fitted(partial(crosser, other, at + 2.0 * k))
        (back if k == 0 else front).append(mover)

    # Passers-by: each comes in through an edge of the frame (from outside it) at its own
    # time, heads across and leaves.
    def passer(label: int) -> _Mover:
        radius = float(rng.uniform(0.07, 0.15) * scale)
        edge = int(rng.integers(0, 4))
        along = float(rng.uniform(0.2, 0.8))
        out = 1.2 * radius
        start = (
            (-out, along * height),
            (width + out, along * height),
            (along * width, -out),
            (along * width, height + out),
        )[edge]
        aim = float(rng.uniform(0.25, 0.75) * width), float(rng.uniform(0.25, 0.75) * height)
        heading = math.atan2(aim[1] - start[1], aim[0] - start[0])
        speed = float(rng.uniform(0.014, 0.022) * scale)
        return _through(
            rng, label, radius, start, float(rng.uniform(0, 0.5) * span), heading, speed
        )

    for _ in range(int(rng.integers(2, 5))):
        lab = int(rng.integers(0, len(CLASSES)))
        mover = fitted(partial(passer, lab))
        (back if rng.random() < 0.5 else front).insert(int(rng.integers(0, 2)), mover)
    return back + front


@cache
def _unit_area(label: int) -> float:
    """Area of the class's shape at radius 1 (by a fine grid)."""
    u, v = np.meshgrid(*(np.linspace(-1.2, 1.2, 1201),) * 2)
    return float(_inside(label, u, v).mean() * 2.4**2)


def _with_visible(
    movers: Sequence[_Mover], frame: np.ndarray, target: dict[str, np.ndarray], t: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    height, width = frame.shape[:2]
    whole = []
    for object_id in target["ids"].tolist():
        mover = movers[object_id - 1]
        radius = mover.at(t, height, width)[2]
        whole.append(radius**2 * _unit_area(mover.label))
    seen = target["masks"].reshape(len(whole), height * width).sum(axis=1)
    target["visible"] = np.minimum(seen / np.maximum(np.array(whole, np.float64), 1.0), 1.0)
    return frame, target


def tracking_scene(
    seed: int, num_frames: int = 90, size: tuple[int, int] = (240, 320)
) -> TrackingScene:
    """Scene ``seed`` of the tracking camera with its ground truth (see
    :class:`TrackingScene`); the same seed gives the same scene."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    height, width = size
    if height < 64 or width < 64:
        raise ValueError(f"size must be at least 64x64, got {size}")
    rng = np.random.default_rng((TRACKING_STREAM, seed))
    background = _background(rng, height, width)
    lines = _tracking_lines(rng)
    zones = (_tracking_zone(rng),)
    movers = _tracking_movers(rng, num_frames, height, width, lines)
    frames = tuple(
        _with_visible(movers, *render(movers, background, t), t) for t in range(num_frames)
    )

    crossings = []
    for t in range(1, num_frames):
        for index, mover in enumerate(movers):
            p, q = mover.centre(t - 1), mover.centre(t)
            for line in lines:
                before = _cross(line, *p, width, height)
                after = _cross(line, *q, width, height)
                if before == 0 or (before > 0) == (after > 0) or after == 0:
                    continue
                u = _meets(line, p, q, width, height)
                if u is not None and 0.0 <= u <= 1.0:
                    direction = "forward" if after > 0 else "backward"
                    crossings.append(Crossing(index + 1, line.name, t, direction))

    visits = []
    for zone in zones:
        flat = [v for x, y in zone.polygon for v in (x * width, y * height)]
        raster = mask_utils.merge(mask_utils.frPyObjects([flat], height, width))
        inside = mask_utils.decode(raster).astype(bool)
        entered: dict[int, int] = {}
        for t, (_, target) in enumerate(frames):
            for object_id, mask in zip(target["ids"].tolist(), target["masks"], strict=True):
                share = float((mask & inside).sum()) / float(mask.sum())
                if object_id not in entered and share >= zone.min_fraction:
                    entered[object_id] = t
                elif object_id in entered and share < zone.min_fraction:
                    visits.append(Visit(object_id, zone.name, entered.pop(object_id), t))
        visits += [Visit(i, zone.name, t, None) for i, t in entered.items()]
    visits.sort(key=lambda v: (v.enter, v.track_id))

    seen = [set(target["ids"].tolist()) for _, target in frames]
    hidden: dict[int, tuple[int, ...]] = {}
    for object_id in range(1, len(movers) + 1):
        on = [t for t, ids in enumerate(seen) if object_id in ids]
        if on:
            gaps = tuple(t for t in range(on[0], on[-1]) if object_id not in seen[t])
            if gaps:
                hidden[object_id] = gaps
    return TrackingScene(
        seed, (height, width), frames, lines, zones, tuple(crossings), tuple(visits), hidden
    )
