"""Encode/decode time and size per frame of JPEG q90 (the frame codec's own functions), PNG
and raw RGB, at 320x240 and 1920x1080: the evidence behind JPEG frames on Kafka."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

import numpy as np
from PIL import Image

from bench.harness import BIG, SEED, SMALL, median_s
from segcore.data import synthetic
from services.common.frames import encode_frame


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _unpng(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.array(img.convert("RGB"))


def _unraw(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, np.uint8).reshape(shape).copy()


def run() -> None:
    """Print the table (median of 5 of each, on a synthetic frame)."""
    print("\n## Frame encoding on Kafka (a synthetic frame; median of 5)")
    print("| frame | encoding | encode ms | decode ms | bytes | of raw |")
    print("|---|---|---:|---:|---:|---:|")
    for height, width in (SMALL, BIG):
        rgb, _ = synthetic.frame(SEED, 0, (height, width))
        message = encode_frame("s", 0, 0.0, 0.0, rgb, 90)
        png, raw = _png(rgb), rgb.tobytes()
        rows: list[tuple[str, Callable[[], object], Callable[[], object], int]] = [
            (
                "JPEG q90 (Pillow)",
                partial(encode_frame, "s", 0, 0.0, 0.0, rgb, 90),
                message.image,
                len(message.data),
            ),
            ("PNG (Pillow, level 6)", partial(_png, rgb), partial(_unpng, png), len(png)),
            ("raw RGB", rgb.tobytes, partial(_unraw, raw, rgb.shape), len(raw)),
        ]
        for name, encode, decode, size in rows:
            enc, dec = median_s(encode, 5), median_s(decode, 5)
            print(
                f"| {width}x{height} | {name} | {1000 * enc:.2f} | {1000 * dec:.2f} | {size:,} "
                f"| {size / rgb.nbytes:.3f} |"
            )
