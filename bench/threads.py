"""The compiled CPU ops with two torch threads against one, quiet and beside a busy process.

    .venv/bin/python bench/threads.py [--repeat 20] [--rounds 5] [--tolerance 0.05]
        [--ops paste_masks,masks_to_rle] [--sizes small,large]

A CPU segment worker shares its machine with ingest and the broker, so one other busy process
is its normal case. For every op at a serving size (``small``: 15 instances in a 320x240
frame, the demo model's sizes) and a large one (``large``: 1080p frames, the COCO models'
sizes), the op runs with ``torch.set_num_threads(1)`` and ``(2)``, first on a quiet machine,
then while a competing process (a Python loop, started and stopped by this benchmark) keeps
one core busy. Times are medians over ``rounds`` alternating blocks per thread count, each
block a warm-up call (the pool's threads still spinning from the other setting, and the
ops' memory of a recent late thread start, settle there) then up to ``repeat`` calls, fewer
for slow ops (a block lasts about half a second, at least 3 calls). Printed per op and size:
the medians and the ratio 2 threads / 1 thread (below 1: two threads faster), quiet and
loaded.

The baseline of each ratio is the same op with one thread, measured in the same run. An op
is flagged SLOWER when, under the competing load, two threads take more than
``1 + tolerance`` times one thread's median; the tolerance covers the run-to-run noise of
identical code on the shared machine (a serial op's ratio is 1 by construction). Exits 1
when any op is flagged.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

import cuda_ext
from segcore.ops import (
    assemble_masks,
    fast_nms,
    masks_to_rle,
    multiscale_roi_align,
    paste_masks,
    preprocess_frames,
)

SIZES = ("small", "large")
THREADS = (1, 2)
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
SPIN = "while True:\n    pass\n"


@dataclass(frozen=True)
class Case:
    op: str
    size: str
    shape: str  # what the case computes, for the table
    fn: Callable[[], object]


def _boxes(n: int, height: int, width: int, gen: torch.Generator, scale: float) -> torch.Tensor:
    """(n, 4) float xyxy boxes inside-ish a height x width image, sides up to scale * size."""
    size = torch.tensor([width, height], dtype=torch.float32)
    centre = torch.rand(n, 2, generator=gen) * size
    half = (torch.rand(n, 2, generator=gen) * scale * size + 4) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _has_op(name: str) -> bool:
    return hasattr(torch.ops.cuda_ext, name)


def _mask_cases(size: str, gen: torch.Generator) -> Iterator[Case]:
    """paste_masks (float and thresholded), masks_to_rle and rle_transitions."""
    height, width = (240, 320) if size == "small" else (1080, 1920)
    n = 15
    masks = torch.rand(n, 1, 28, 28, generator=gen)
    boxes = _boxes(n, height, width, gen, 0.3)
    where = f"{n}x28x28 -> {height}x{width}"
    yield Case("paste_masks", size, where, lambda: paste_masks(masks, boxes, (height, width)))
    yield Case(
        "paste_masks threshold",
        size,
        where,
        lambda: paste_masks(masks, boxes, (height, width), threshold=0.5),
    )
    binary = paste_masks(masks, boxes, (height, width), threshold=0.5)[:, 0].contiguous()
    yield Case("masks_to_rle", size, f"{n}x{height}x{width}", lambda: masks_to_rle(binary))
    yield Case(
        "rle_transitions",
        size,
        f"{n}x{height}x{width}",
        lambda: torch.ops.cuda_ext.rle_transitions(binary),
    )


def _detection_cases(size: str, gen: torch.Generator) -> Iterator[Case]:
    """assemble_masks, fast_nms and preprocess_frames, at YOLACT's sizes."""
    if size == "small":
        # the demo model: 240x320 input, prototypes at stride 4, 5 classes
        protos_hw, classes, n_masks = (60, 80), 5, 15
        frames = torch.randint(0, 256, (1, 240, 320, 3), dtype=torch.uint8, generator=gen)
        model_hw = (240, 320)
    else:
        # YOLACT on COCO: 550x550 input, 138x138 prototypes, 80 classes, four 1080p frames
        protos_hw, classes, n_masks = (138, 138), 80, 100
        frames = torch.randint(0, 256, (4, 1080, 1920, 3), dtype=torch.uint8, generator=gen)
        model_hw = (550, 550)
    protos = torch.randn(1, 32, *protos_hw, generator=gen)
    coeffs = torch.randn(n_masks, 32, generator=gen)
    proto_boxes = _boxes(n_masks, protos_hw[0], protos_hw[1], gen, 0.3)
    index = torch.zeros(n_masks, dtype=torch.int64)
    yield Case(
        "assemble_masks",
        size,
        f"{n_masks} x 32x{protos_hw[0]}x{protos_hw[1]}",
        lambda: assemble_masks(protos, coeffs, proto_boxes, index),
    )
    candidates = 2000
    det_boxes = _boxes(candidates, model_hw[0], model_hw[1], gen, 0.3)
    det_scores = torch.rand(classes, candidates, generator=gen)
    yield Case(
        "fast_nms",
        size,
        f"{classes} classes x {candidates} boxes, top 200",
        lambda: fast_nms(det_boxes, det_scores, 0.5, 200, 0.05, 100),
    )
    b, h, w, _ = frames.shape
    yield Case(
        "preprocess_frames",
        size,
        f"{b}x{h}x{w} -> {model_hw[0]}x{model_hw[1]}",
        lambda: preprocess_frames(frames, model_hw, MEAN, STD),
    )


def _pooling_cases(size: str, gen: torch.Generator) -> Iterator[Case]:
    """multiscale_roi_align (and all_levels_roi_align where built): Mask R-CNN's mask head."""
    if size == "small":
        image_hw, n, pooled = (240, 320), 15, 14  # mask head of 15 detections
    else:
        image_hw, n, pooled = (1088, 1920), 512, 7  # box head of 512 proposals
    features = [
        torch.randn(1, 256, image_hw[0] // s, image_hw[1] // s, generator=gen)
        for s in (4, 8, 16, 32)
    ]
    boxes = [_boxes(n, image_hw[0], image_hw[1], gen, 0.4)]
    shape = f"{n} boxes, 4 levels of 256 ch, {pooled}x{pooled}"
    yield Case(
        "multiscale_roi_align",
        size,
        shape,
        lambda: multiscale_roi_align(features, boxes, [image_hw], pooled, 2),
    )
    if _has_op("all_levels_roi_align"):
        from segcore.ops.all_levels_roi_align import all_levels_roi_align

        yield Case(
            "all_levels_roi_align",
            size,
            shape,
            lambda: all_levels_roi_align(features, boxes, [image_hw], pooled, 2),
        )


def cases(sizes: tuple[str, ...]) -> list[Case]:
    """Every op at every size in ``sizes``, on fixed random inputs."""
    gen = torch.Generator().manual_seed(0)
    out: list[Case] = []
    for size in sizes:
        out += _mask_cases(size, gen)
        out += _detection_cases(size, gen)
        out += _pooling_cases(size, gen)
    return out


BLOCK_S = 0.5  # the time a block of calls aims at
MIN_CALLS = 3


def _block_ms(fn: Callable[[], object], threads: int, repeat: int) -> list[float]:
    """ms of each timed call of one block: a warm-up call, then up to ``repeat`` calls."""
    torch.set_num_threads(threads)
    start = time.perf_counter()
    fn()  # warm-up: the pool at this size, caches
    first = time.perf_counter() - start
    calls = max(MIN_CALLS, min(repeat, int(BLOCK_S / max(first, 1e-6))))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return times


def measure(fn: Callable[[], object], repeat: int, rounds: int) -> dict[int, float]:
    """Median ms of ``fn`` per thread count, over alternating blocks of ``repeat`` calls."""
    samples: dict[int, list[float]] = {t: [] for t in THREADS}
    for r in range(rounds):
        order = THREADS if r % 2 == 0 else THREADS[::-1]
        for threads in order:
            samples[threads] += _block_ms(fn, threads, repeat)
    return {t: statistics.median(s) for t, s in samples.items()}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (USER_HZ)


@contextmanager
def competing_process() -> Iterator[None]:
    """A Python process spinning on one core for the duration; running when this yields."""
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        deadline = time.monotonic() + 10
        while _cpu_seconds(spinner.pid) < 0.2:
            if spinner.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the competing process did not start spinning")
            time.sleep(0.05)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def ratio_row(case: Case, quiet: dict[int, float], loaded: dict[int, float], tol: float) -> str:
    """One markdown table row; the verdict is SLOWER when loaded 2t/1t > 1 + tol."""
    q, ld = quiet[2] / quiet[1], loaded[2] / loaded[1]
    verdict = "SLOWER with 2 threads" if ld > 1 + tol else "ok"
    cells = (
        case.op,
        case.size,
        case.shape,
        f"{quiet[1]:.3f}",
        f"{quiet[2]:.3f}",
        f"{q:.2f}",
        f"{loaded[1]:.3f}",
        f"{loaded[2]:.3f}",
        f"{ld:.2f}",
        verdict,
    )
    return "| " + " | ".join(cells) + " |"


def _selected(all_cases: list[Case], ops: str | None) -> list[Case]:
    if not ops:
        return all_cases
    wanted = {o.strip() for o in ops.split(",")}
    known = {c.op for c in all_cases}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"--ops: unknown op(s) {sorted(unknown)}; known: {sorted(known)}")
    return [c for c in all_cases if c.op in wanted]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20, help="most calls per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="blocks per thread count")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--ops", help="comma-separated op names (default: all)")
    parser.add_argument("--sizes", default=",".join(SIZES))
    args = parser.parse_args()
    sizes = tuple(s.strip() for s in args.sizes.split(","))
    if not set(sizes) <= set(SIZES):
        raise SystemExit(f"--sizes: expected some of {SIZES}, got {args.sizes!r}")
    if args.repeat < 1 or args.rounds < 1:
        raise SystemExit("--repeat and --rounds must be >= 1")
    if not cuda_ext.available():
        raise SystemExit(f"compiled ops not loaded: {cuda_ext.load_error()}")
    selected = _selected(cases(sizes), args.ops)
    print(
        f"torch={torch.__version__} library={cuda_ext.library_path()} "
        f"repeat={args.repeat} rounds={args.rounds} tolerance={args.tolerance}"
    )
    quiet = {id(c): measure(c.fn, args.repeat, args.rounds) for c in selected}
    with competing_process():
        loaded = {id(c): measure(c.fn, args.repeat, args.rounds) for c in selected}
    header = (
        "op",
        "size",
        "work",
        "quiet 1t ms",
        "quiet 2t ms",
        "quiet 2t/1t",
        "loaded 1t ms",
        "loaded 2t ms",
        "loaded 2t/1t",
        "",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    slower = []
    for case in selected:
        print(ratio_row(case, quiet[id(case)], loaded[id(case)], args.tolerance))
        if loaded[id(case)][2] > (1 + args.tolerance) * loaded[id(case)][1]:
            slower.append(f"{case.op} ({case.size})")
    if slower:
        print("slower with 2 threads under load: " + ", ".join(slower))
        return 1
    print("no op slower with 2 threads under load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
