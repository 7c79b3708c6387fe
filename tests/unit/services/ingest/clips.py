"""Small H.264 files written with PyAV for the ingest unit tests (MP4, the index written
last, as PyAV and most recorders do)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def grey(width: int, height: int) -> Callable[[int], np.ndarray]:
    """Frame ``t`` as a flat grey of level ``8 * t`` (the frames tell their index)."""
    return lambda t: np.full((height, width, 3), 8 * t, np.uint8)


def write_clip(
    path: Path,
    frames: int,
    *,
    fps: int = 15,
    size: tuple[int, int] = (64, 48),
    frame: Callable[[int], np.ndarray] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """``frames`` frames at ``fps``, ``size`` (width, height), frame ``t`` from ``frame(t)``
    ((height, width, 3) uint8 RGB; a flat grey by default); returns ``path``."""
    width, height = size
    make = frame if frame is not None else grey(width, height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if options:
            stream.options = options
        for t in range(frames):
            picture = av.VideoFrame.from_ndarray(make(t), format="rgb24")
            picture.pts, picture.time_base = t, Fraction(1, fps)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
