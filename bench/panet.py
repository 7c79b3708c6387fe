"""PANet against Mask R-CNN at the demo's size: ``panet_r18_demo`` timed against its baseline
``maskrcnn_r18_demo`` (same backbone, input and training budget), measured in the same run.

    .venv/bin/python bench/panet.py [--repeat 5] [--frames 20] [--threads N]

Both are built as the CPU serves them (``fuse=True, channels_last=True``) with their shipped
weights and run through the serving entry (``segcore.models.frames.infer_frames``, uint8
frames, compact masks) on the same validation frames of the synthetic camera (240x320), one
frame per call. Baseline and PANet alternate, ``--repeat`` pairs after one untimed pair; the
ratio printed is the median of the pairs' ratios (PANet's time over Mask R-CNN's: above 1,
PANet is slower). No goal: PANet's extra parts cost what they cost; this records how much.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import segcore
from segcore.models.frames import infer_frames
from segcore.training import synthetic_samples

BASELINE, MODEL = "maskrcnn_r18_demo", "panet_r18_demo"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timed pairs")
    parser.add_argument("--frames", type=int, default=20, help="frames per timed pass")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = [
        torch.from_numpy(frame) for frame, _ in synthetic_samples("val", args.frames, (240, 320))
    ]
    models = {n: segcore.build(n, fuse=True, channels_last=True) for n in (BASELINE, MODEL)}

    def run(name: str) -> float:
        start = time.perf_counter()
        for frame in frames:
            infer_frames(models[name], [frame])
        return time.perf_counter() - start

    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, batch 1")
    run(BASELINE), run(MODEL)  # untimed pair
    times: dict[str, list[float]] = {BASELINE: [], MODEL: []}
    ratios = []
    for _ in range(args.repeat):
        base, panet = run(BASELINE), run(MODEL)
        times[BASELINE].append(base)
        times[MODEL].append(panet)
        ratios.append(panet / base)
    for name in (BASELINE, MODEL):
        rate = len(frames) / statistics.median(times[name])
        print(f"{name:20s} {rate:6.2f} images/s")
    print(f"{MODEL} time / {BASELINE} time: {statistics.median(ratios):.2f}x (median of pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
