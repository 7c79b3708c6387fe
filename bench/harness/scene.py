"""The synthetic scene the data-path benchmarks measure on: the model, the two video sizes,
and the H.264 files, written once into a cache folder and reused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import av
import numpy as np

from segcore.data import synthetic

MODEL = "yolact_r18_demo"
SMALL = (240, 320)  # (H, W)
SMALL_FPS = 15
BIG = (1080, 1920)  # (H, W)
BIG_FPS = 30
SEED = 20261126


def synthetic_video(cache: Path, seed: int, frames: int, size: tuple[int, int], fps: int) -> Path:
    """The synthetic scene as H.264, ``size`` (H, W), written once into ``cache`` and reused."""
    path = cache / f"scene{seed}-{size[1]}x{size[0]}-{frames}f-{fps}fps.mp4"
    if not path.is_file():
        print(f"writing {path} ...", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            partial_path = Path(tmp) / path.name
            synthetic.write_video(partial_path, seed, frames, size, fps=fps)
            partial_path.replace(path)
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video file: (H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
