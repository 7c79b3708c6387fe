"""Commands that need no API: ``infra`` (the local servers), ``ops`` (build the compiled
ops), ``train``, ``eval``, ``run`` (one source segmented in this process) and ``demo``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from services.common.settings import Settings


def _infra(settings: Settings, args: argparse.Namespace) -> int:
    from services.infra import Infra

    infra = Infra(settings)
    if args.action == "prepare":
        infra.prepare(refresh=args.refresh)
        print("kafka jars, java, redis-server and prometheus: ready")
        return 0
    if args.action == "up":
        infra.up(refresh=args.refresh)
        return 0
    if args.action == "down":
        stopped = infra.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    rows = infra.status()
    for row in rows:
        state = "answering" if row.answering else ("running" if row.running else "down")
        print(f"{row.name:<11} {state:<10} {row.address}")
    print(f"logs: {infra.log_dir}")
    return 0 if all(r.answering for r in rows) else 3


def _ops(settings: Settings, args: argparse.Namespace) -> int:
    from cuda_ext import build

    return build.main(["--require-cuda"] if args.require_cuda else [])


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from services.demo import run_demo

    try:
        return run_demo(settings, events=args.events, model=args.model)
    except ValueError as exc:
        print(f"segstream demo: {exc}", file=sys.stderr)
        return 2


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from segcore.training import TrainConfig, train

    try:
        config = TrainConfig.from_file(args.config)
    except ValueError as exc:
        print(f"segstream train: {exc}", file=sys.stderr)
        return 2
    if args.iterations is not None:
        config.iterations = args.iterations
    train(config, resume=not args.restart)
    return 0


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    import segcore
    from segcore.evaluation import evaluate
    from segcore.training import open_eval_data

    overrides = {}
    if args.weights:
        overrides["weights"] = args.weights
    if args.model.endswith("_demo") and args.weights:  # not the shipped weights first
        overrides["pretrained"] = False
    if args.tracking and (args.scenes < 1 or args.frames < 2 or not args.fps > 0):
        print(
            "segstream eval --tracking: --scenes must be >= 1, --frames >= 2, --fps > 0",
            file=sys.stderr,
        )
        return 2
    model = segcore.build(args.model, **overrides)
    if args.tracking:
        return _eval_tracking(model, args)
    samples, names = open_eval_data(args.data, args.images, (240, 320))
    result = evaluate(model, samples, names)
    print(result.table())
    return 0


def _eval_tracking(model: nn.Module, args: argparse.Namespace) -> int:
    from segcore.evaluation import TRACKING_SEEDS, MissingExtraError, evaluate_tracking

    first = TRACKING_SEEDS.start if args.first_seed is None else args.first_seed
    seeds = range(first, first + args.scenes)
    try:
        result = evaluate_tracking(model, seeds, num_frames=args.frames, fps=args.fps)
    except MissingExtraError as exc:
        print(f"segstream eval --tracking: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    return 0


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from segcore.runtime import keep_heap
    from services.pipeline.run import RunOptions, SourceError, run

    keep_heap()
    options = RunOptions(
        source=args.source,
        model=args.model,
        fps=args.fps,
        max_frames=args.max_frames,
        min_score=args.min_score,
        batch_size=args.batch,
        stream_id=args.stream_id,
    )
    publisher = None
    if args.redis:
        from services.common.redis import EventPublisher, make_redis

        publisher = EventPublisher(make_redis(settings), settings.redis_stream_maxlen)
    try:
        if args.output:
            with open(args.output, "w") as out:
                stats = run(options, out, publisher=publisher)
        else:
            stats = run(options, publisher=publisher)
    except SourceError as exc:
        print(f"segstream run: {exc}", file=sys.stderr)
        return 1
    print(
        f"segstream run: {stats.published} events from {stats.sampled} sampled frames"
        f" ({stats.dropped} dropped)",
        file=sys.stderr,
    )
    for error in stats.errors:
        print(f"segstream run: {error}", file=sys.stderr)
    return 1 if stats.errors else 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    infra = sub.add_parser("infra", help="local Kafka, Redis and Prometheus on loopback")
    infra.add_argument("action", choices=["up", "down", "status", "prepare"])
    infra.add_argument(
        "--refresh", action="store_true", help="resolve the Kafka jars again (up, prepare)"
    )
    infra.set_defaults(func=_infra)

    ops = sub.add_parser("ops", help="compiled ops: build the cuda_ext library")
    ops.add_argument("action", choices=["build"])
    ops.add_argument("--require-cuda", action="store_true", help="fail when nvcc is not found")
    ops.set_defaults(func=_ops)

    train = sub.add_parser("train", help="train a model from a TOML config")
    train.add_argument("config", help="e.g. configs/yolact_r18_demo.toml")
    train.add_argument("--iterations", type=int, help="override the config's iterations")
    train.add_argument("--restart", action="store_true", help="ignore the last checkpoint")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("eval", help="COCO mask and box AP of a model on a dataset")
    evaluate.add_argument("--model", required=True, help="a registered model name")
    evaluate.add_argument("--weights", help="weights file (the model's own by default)")
    evaluate.add_argument(
        "--data", default="synthetic:val", help="synthetic:val or coco:IMAGES_DIR:ANNOTATIONS"
    )
    evaluate.add_argument("--images", type=int, default=200, help="how many images")
    evaluate.add_argument(
        "--tracking",
        action="store_true",
        help="track scenes of the synthetic tracking camera instead: MOTA, IDF1, HOTA, "
        "ID switches and line crossings against the truth",
    )
    evaluate.add_argument("--scenes", type=int, default=5, help="tracking: how many scenes")
    evaluate.add_argument("--frames", type=int, default=120, help="tracking: frames per scene")
    evaluate.add_argument("--fps", type=float, default=15.0, help="tracking: frames per second")
    evaluate.add_argument(
        "--first-seed", type=int, help="tracking: the first scene's seed (unseen seeds by default)"
    )
    evaluate.set_defaults(func=_eval)

    run = sub.add_parser(
        "run", help="segment one source in this process, events as JSON lines (no servers)"
    )
    run.add_argument("source", help="a video file, rtsp://, http(s):// URL")
    run.add_argument("--model", default="yolact_r18_demo", help="a registered model")
    run.add_argument("--output", help="JSON lines file (standard output by default)")
    run.add_argument("--fps", type=float, help="sample to this rate (every frame by default)")
    run.add_argument("--max-frames", type=int, help="stop after this many sampled frames")
    run.add_argument("--min-score", type=float, default=0.3, help="drop weaker instances")
    run.add_argument("--batch", type=int, default=4, help="frames per inference batch")
    run.add_argument("--stream-id", default="local", help="the events' stream id")
    run.add_argument(
        "--redis", action="store_true", help="also publish the events to the configured Redis"
    )
    run.set_defaults(func=_run)

    demo = sub.add_parser(
        "demo", help="start the local infrastructure and push a synthetic camera through it"
    )
    demo.add_argument("--events", type=int, help="stop after this many events (Ctrl-C otherwise)")
    demo.add_argument(
        "--model",
        default="yolact_r18_demo",
        help="the model segmenting the camera (one of the *_demo models, e.g. panet_r18_demo)",
    )
    demo.set_defaults(func=_demo)
