"""paste_masks: the compiled op against torchvision's paste_masks_in_image, same run, same inputs.

    .venv/bin/python bench/bench_paste_masks.py [--device cpu|cuda] [--repeat 20]

Prints the median time of each and the speed-up over torchvision (the baseline).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

import cuda_ext
from segcore.ops import expand_boxes, paste_masks, paste_masks_reference

CASES = [  # (masks, image height, image width)
    (10, 480, 640),
    (50, 720, 1280),
    (100, 1080, 1920),
]


def _inputs(n: int, height: int, width: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(n, 1, 28, 28, generator=gen)
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = (torch.rand(n, 2, generator=gen) * 0.3 * size + 4) / 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    return masks.to(device), boxes.to(device)


def _median_ms(fn: Callable[[], torch.Tensor], repeat: int, device: str) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if not cuda_ext.available():
        raise SystemExit(f"compiled ops not loaded: {cuda_ext.load_error()}")
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__}")
    header = ("case", "torchvision ms", "compiled ms", "reference ms", "speed-up")
    print("{:>22} {:>15} {:>12} {:>13} {:>9}".format(*header))
    for n, height, width in CASES:
        masks, boxes = _inputs(n, height, width, args.device)
        shape = (height, width)
        int_boxes = expand_boxes(boxes, 28, 1)
        runs = (
            partial(paste_masks_in_image, masks, boxes, shape),  # the baseline
            partial(paste_masks, masks, boxes, shape),
            partial(paste_masks_reference, masks, int_boxes, shape),
        )
        base, ours, ref = (_median_ms(fn, args.repeat, args.device) for fn in runs)
        case = f"{n} masks {height}x{width}"
        print(f"{case:>22} {base:15.2f} {ours:12.2f} {ref:13.2f} {base / ours:8.1f}x")


if __name__ == "__main__":
    main()
