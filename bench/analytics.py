"""Zone and line analytics of one frame, on RLEs, against the same shares on decoded masks.

    .venv/bin/python bench/analytics.py [--instances 20] [--zones 16] [--lines 16]
                                        [--size 1080x1920] [--frames 30]

A 1080p frame sequence of ``--instances`` tracked ellipses drifting across ``--zones``
polygons (a grid of quadrilaterals, each a different shape) and ``--lines`` segments.
Measured: ``Analytics.update`` per frame (what a segment worker pays per frame: the share of
every mask inside every zone computed on the COCO RLEs with pycocotools, polygons rasterised
once per frame size, then the crossing tests). Baseline, in the same run on the same masks:
the shares computed the dense way (each mask decoded with ``pycocotools.mask.decode``, each
zone a cached dense array, ``(mask & zone).sum() / mask.sum()`` in numpy within the
instance's box). Both compute the same shares (checked). Printed: the median ms per frame of
each and the ratio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
from pycocotools import mask as mask_utils

from segcore.tracking import Analytics, Line, Tracked, Zone


def zones_of(count: int) -> list[Zone]:
    side = math.ceil(math.sqrt(count))
    out = []
    for i in range(count):
        x0, y0 = (i % side) / side, (i // side) / side
        d = 1 / side
        polygon = (
            (x0, y0),
            (x0 + d, y0 + d * 0.1),
            (x0 + d * 0.9, y0 + d),
            (x0 + d * 0.05, y0 + d * 0.8),
        )
        out.append(Zone(f"z{i}", polygon))
    return out


def lines_of(count: int) -> list[Line]:
    return [
        Line(f"l{i}", ((i + 0.5) / count, 0.05), ((i + 0.5) / count, 0.95)) for i in range(count)
    ]


def frames_of(instances: int, frames: int, height: int, width: int) -> list[list[Tracked]]:
    rng = np.random.default_rng(0)
    start = rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height], (instances, 2))
    speed = rng.uniform(-8, 8, (instances, 2))
    axes = rng.uniform([30, 50], [90, 160], (instances, 2))
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for f in range(frames):
        items = []
        for i in range(instances):
            cx, cy = start[i] + speed[i] * f
            ax, ay = axes[i]
            x1, x2 = int(max(0, cx - ax)), int(min(width, cx + ax + 1))
            y1, y2 = int(max(0, cy - ay)), int(min(height, cy + ay + 1))
            mask = np.zeros((height, width), np.uint8)
            sub = ((xx[y1:y2, x1:x2] - cx) / ax) ** 2 + ((yy[y1:y2, x1:x2] - cy) / ay) ** 2 <= 1
            mask[y1:y2, x1:x2] = sub
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode()
            items.append(
                Tracked(i + 1, "thing", 0, (float(x1), float(y1), float(x2), float(y2)), rle)
            )
        out.append(items)
    return out


def dense_shares(items: list[Tracked], zones: list[np.ndarray]) -> np.ndarray:
    """The baseline: (instances, zones) shares on decoded masks, compared within each
    instance's box only."""
    out = np.zeros((len(items), len(zones)))
    for i, item in enumerate(items):
        assert item.mask is not None
        rle = {"size": item.mask["size"], "counts": item.mask["counts"].encode()}
        x1, y1, x2, y2 = (int(v) for v in item.box)
        mask = mask_utils.decode(rle)[y1:y2, x1:x2].astype(bool)
        area = mask.sum()
        if area:
            for j, zone in enumerate(zones):
                out[i, j] = np.logical_and(mask, zone[y1:y2, x1:x2]).sum() / area
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--zones", type=int, default=16)
    parser.add_argument("--lines", type=int, default=16)
    parser.add_argument("--size", default="1080x1920", help="HxW")
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    zones, lines = zones_of(args.zones), lines_of(args.lines)
    frames = frames_of(args.instances, args.frames, height, width)
    analytics = Analytics(zones, lines)
    dense_zones = [
        mask_utils.decode(analytics._raster(z, height, width)).astype(bool) for z in zones
    ]
    # the same shares both ways
    rle_shares = analytics._fractions(frames[0], height, width)
    assert np.allclose(rle_shares, dense_shares(frames[0], dense_zones)), "shares differ"
    measured, baseline = [], []
    for t, items in enumerate(frames):
        start = time.perf_counter()
        dense_shares(items, dense_zones)
        baseline.append(time.perf_counter() - start)
        start = time.perf_counter()
        analytics.update(items, t * 0.2, (height, width))
        measured.append(time.perf_counter() - start)
    base_ms = statistics.median(baseline) * 1000
    ms = statistics.median(measured) * 1000
    print(
        f"{args.instances} instances, {args.zones} zones, {args.lines} lines, {height}x{width}, "
        f"{args.frames} frames"
    )
    print(f"baseline (decoded masks, numpy shares) {base_ms:8.2f} ms/frame")
    print(f"Analytics.update (RLE shares + lines)  {ms:8.2f} ms/frame")
    print(f"speed-up {base_ms / ms:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
