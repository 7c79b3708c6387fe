"""CPU inference with ``segcore.runtime.keep_heap`` against glibc's default malloc settings,
measured in the same run.

    .venv/bin/python bench/malloc.py [--repeats N] [--threads N]   (or -m bench.malloc)

malloc settings hold for a whole process, so each measurement is a fresh interpreter: the
demo model (``load_model("yolact_r18_demo", "cpu")``, as the segment worker builds
it) runs ``services.segment.infer.infer`` on the frames of the synthetic 320x240 file of
bench/pipeline.py in batches of 8, three passes after a warm-up, frames/s of the median
pass. The two settings alternate (default, keep_heap, default, ...) so a drift of the
machine affects both; the ratio is of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
from segcore.runtime import keep_heap
tuned = keep_heap() if sys.argv[1] == "keep_heap" else None
from bench.harness import MODEL, SEED, SMALL, SMALL_FPS, decoded_frames, synthetic_video
from services.common.settings import Settings
from services.segment.infer import infer, load_model

video = synthetic_video(Settings().cache_dir / "bench", SEED, 240, SMALL, SMALL_FPS)
frames = decoded_frames(video)
model = load_model(MODEL, "cpu")
batches = [frames[i : i + 8] for i in range(0, len(frames), 8)]
for warm in batches[:3]:
    infer(model, warm)
rates = []
for _ in range(3):
    start = time.perf_counter()
    for chunk in batches:
        infer(model, chunk)
    rates.append(len(frames) / (time.perf_counter() - start))
rates.sort()
print(json.dumps({"tuned": tuned, "fps": rates[1]}))
"""


def measure(mode: str, threads: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(threads)],
        cwd=ROOT,  # `python -c` imports from its working folder: `bench` as a package
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if mode == "keep_heap" and result["tuned"] is not True:
        raise RuntimeError("keep_heap did not take effect (not glibc?)")
    return float(result["fps"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="processes per setting")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    started = time.monotonic()
    fps: dict[str, list[float]] = {"default": [], "keep_heap": []}
    for repeat in range(args.repeats):
        for mode in fps:
            fps[mode].append(measure(mode, args.threads))
            print(f"{mode} (process {repeat + 1}): {fps[mode][-1]:.1f} frames/s", flush=True)
    base, tuned = statistics.median(fps["default"]), statistics.median(fps["keep_heap"])
    print(
        f"\n## Demo model, batches of 8 at 320x240, {args.threads} threads "
        f"({time.monotonic() - started:.0f} s in all)\n"
        "| malloc | frames/s (median of processes) | ratio |\n|---|---:|---:|\n"
        f"| glibc defaults (baseline) | {base:.1f} | 1.00x |\n"
        f"| keep_heap | {tuned:.1f} | {tuned / base:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
