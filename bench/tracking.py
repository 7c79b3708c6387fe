"""The tracker's and the zone and line analytics' cost per frame against the demo model's.

    .venv/bin/python bench/tracking.py [--scenes 3] [--frames 120] [--rounds 3] [--goal 0.05]
                                       [--threads 0]

Frames: scenes of the synthetic tracking camera (``segcore.data.synthetic.tracking_scene``,
240x320, objects entering and leaving, occlusions, crossing paths, the scene's two lines and
its zone), from seeds training never drew. Baseline: the demo model ``yolact_r18_demo``
built as the segment worker serves it (``segcore.build_served``, CPU), each frame through
the serving entry (``infer_frames``, compact masks) and ``instances_of`` (masks pasted at
the frame's size and RLE-encoded, boxes scaled, ``min_score`` 0.3): the worker's inference
for the frame. Measured, on those same frames' detections: ``Tracker.update`` then
``Analytics.update`` of the tracked instances (the segment worker's ``StreamTracks`` work
for a frame, less the event codec), a fresh tracker and analytics per scene and round.

Each is timed per frame; printed are the mean ms per frame of each (median over
``--rounds`` rounds, the model's rounds alternating with the tracker's) and the ratio
tracker / model, first as the machine is, then while a competing process (a Python loop,
started and stopped by this benchmark) keeps one core busy. ``--threads``: the model's
torch threads (0: torch's default); on a loaded machine fewer threads make the model faster
and so the ratio larger. The goal: the ratio at most ``--goal`` in both; exits 1 when it is
missed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (`python bench/tracking.py`), sys.path starts with bench/: put the repository
# root there instead, as `python -m bench.tracking` does, so that `bench` imports as a package.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import statistics
import time
from collections.abc import Sequence

import torch

import segcore
from bench.threads import competing_process
from segcore.data import synthetic
from segcore.evaluation import TRACKING_SEEDS
from segcore.models.frames import infer_frames
from segcore.tracking import Analytics, Detection, Tracked, Tracker, TrackerConfig
from services.segment.infer import instances_of

MODEL = "yolact_r18_demo"
MIN_SCORE = 0.3
FPS = 15.0


def model_seconds(
    model: torch.nn.Module, frames: Sequence[torch.Tensor], names: list[str]
) -> tuple[float, list[list[Detection]]]:
    """Seconds of inference per frame (mean) and the frames' detections."""
    found = []
    start = time.perf_counter()
    for frame in frames:
        with torch.inference_mode():
            (output,) = infer_frames(model, frame[None], "compact")
        size = (frame.shape[0], frame.shape[1])
        instances = instances_of(output, names, MIN_SCORE, size)
        found.append([Detection(i.box, i.score, i.class_id, i.rle()) for i in instances])
    return (time.perf_counter() - start) / len(frames), found


def tracking_seconds(
    scenes: Sequence[synthetic.TrackingScene],
    detections: Sequence[Sequence[Sequence[Detection]]],
    names: list[str],
) -> tuple[float, int]:
    """Seconds of tracker + analytics per frame (mean) and how many events they gave."""
    config = TrackerConfig()
    elapsed = 0.0
    frames = events = 0
    for scene, found in zip(scenes, detections, strict=True):
        tracker = Tracker(config)
        analytics = Analytics(scene.zones, scene.lines, forget_after_s=config.max_age_s)
        for t, dets in enumerate(found):
            start = time.perf_counter()
            ids = tracker.update(dets, t / FPS)
            tracked = [
                Tracked(i, names[d.class_id], d.class_id, d.box, d.mask)
                for d, i in zip(dets, ids, strict=True)
                if i is not None
            ]
            events += len(analytics.update(tracked, t / FPS, scene.size))
            elapsed += time.perf_counter() - start
            frames += 1
    return elapsed / frames, events


def measure(
    model: torch.nn.Module,
    scenes: Sequence[synthetic.TrackingScene],
    frames: Sequence[Sequence[torch.Tensor]],
    names: list[str],
    rounds: int,
) -> tuple[float, float, int]:
    """Median over rounds of (model s/frame, tracker + analytics s/frame), events."""
    model_s, track_s = [], []
    events = 0
    for _ in range(rounds):
        per_scene = [model_seconds(model, f, names) for f in frames]
        model_s.append(statistics.fmean(s for s, _ in per_scene))
        seconds, events = tracking_seconds(scenes, [d for _, d in per_scene], names)
        track_s.append(seconds)
    return statistics.median(model_s), statistics.median(track_s), events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--goal", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    args = parser.parse_args(argv)

    model = segcore.build_served(MODEL, device="cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(getattr(model, "class_names", None) or synthetic.CLASSES)
    seeds = list(TRACKING_SEEDS[: args.scenes])
    scenes = [synthetic.tracking_scene(seed, args.frames) for seed in seeds]
    frames = [[torch.from_numpy(rgb) for rgb, _ in scene.frames] for scene in scenes]
    print(
        f"{MODEL} served on CPU ({torch.get_num_threads()} torch threads), {len(scenes)} "
        f"tracking scenes x {args.frames} frames of 240x320 (seeds {seeds[0]}..{seeds[-1]}), "
        f"{args.rounds} rounds",
        flush=True,
    )
    print("| load | model ms/frame | tracker + analytics ms/frame | ratio | events | |")
    print("|---|---:|---:|---:|---:|---|")
    ok = True
    for load in ("as the machine is", "one core kept busy"):
        if load == "as the machine is":
            model_s, track_s, events = measure(model, scenes, frames, names, args.rounds)
        else:
            with competing_process():
                model_s, track_s, events = measure(model, scenes, frames, names, args.rounds)
        ratio = track_s / model_s
        met = ratio <= args.goal
        ok &= met
        print(
            f"| {load} | {1000 * model_s:.1f} | {1000 * track_s:.2f} | {100 * ratio:.1f}% | "
            f"{events} | {'ok' if met else f'MISSED (goal <= {100 * args.goal:.0f}%)'} |",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
