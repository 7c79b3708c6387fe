"""The ``segstream`` command."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from segcore.data.coco import DatasetError
from segcore.models.weights import WeightsError
from services.common.settings import ConfigFileError, Settings
from services.infra.errors import InfraError

if TYPE_CHECKING:
    from services.client import Client
    from services.common.metrics import PipelineMetrics


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

    return run_demo(settings, events=args.events)


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
    if args.model == "yolact_r18_demo" and args.weights:
        overrides["pretrained"] = False
    model = segcore.build(args.model, **overrides)
    samples, names = open_eval_data(args.data, args.images, (240, 320))
    result = evaluate(model, samples, names)
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


def _serve(settings: Settings, process: str) -> tuple[threading.Event, PipelineMetrics]:
    """Logs, /metrics and SIGTERM/SIGINT handling of a long-running worker process."""
    from segcore.runtime import keep_heap
    from services.common import logs
    from services.common.metrics import PipelineMetrics

    keep_heap()  # a steady frame loop reuses its pages (segcore/runtime.py)
    logs.configure(settings.log_level, process)
    metrics = PipelineMetrics()
    if settings.metrics_port:
        try:
            port = metrics.serve(settings.host, settings.metrics_port)
        except OSError as exc:
            raise InfraError(
                f"{process}: cannot serve metrics on {settings.host}:{settings.metrics_port}: "
                f"{exc.strerror}",
                "give each process its own port with SEGSTREAM_METRICS_PORT=<port> (0: any)",
            ) from None
        print(f"{process}: metrics on http://{settings.host}:{port}/metrics", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop, metrics


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from services.ingest.worker import IngestOptions, IngestWorker

    stop, metrics = _serve(settings, "ingest")
    options = IngestOptions(read_timeout_s=args.read_timeout, stall_s=args.stall_timeout)
    IngestWorker(settings, metrics, options, worker_id=args.worker_id).run(stop)
    return 0


def _segment(settings: Settings, args: argparse.Namespace) -> int:
    import segcore
    from services.segment.worker import SegmentOptions, SegmentWorker

    if args.model not in segcore.list_models():
        print(f"segstream segment: unknown model {args.model!r}", file=sys.stderr)
        return 2
    stop, metrics = _serve(settings, "segment")
    options = SegmentOptions(
        batch_size=args.batch_size,
        batch_deadline_ms=args.batch_deadline_ms,
        min_score=args.min_score,
        device=args.device,
    )
    SegmentWorker(settings, args.model, metrics, options, worker_id=args.worker_id).run(stop)
    return 0


def _api(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from services.api.app import create_app
    from services.api.auth import TokenConfigError, load_tokens

    stop, metrics = _serve(settings, "api")  # /metrics on the metrics port, as every process
    del stop  # uvicorn handles SIGTERM and SIGINT itself
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if not load_tokens(settings):
            print(
                "segstream api: no tokens configured; set SEGSTREAM_API_TOKENS or "
                "SEGSTREAM_API_TOKENS_FILE (every route but health and metrics needs one)",
                file=sys.stderr,
            )
    except TokenConfigError as exc:
        print(f"segstream api: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    uvicorn.run(
        create_app(settings, metrics=metrics),
        host=host,
        port=settings.api_port,
        log_level="warning",
        ws_max_size=1024 * 1024,
    )
    return 0


def _client(settings: Settings) -> Client:
    from services.client import Client

    if settings.api_token is None:
        raise InfraError("no API token", "set SEGSTREAM_API_TOKEN to a token the API accepts")
    url = settings.api_url or f"http://{settings.host}:{settings.api_port}"
    return Client(url, settings.api_token.get_secret_value())


def _show(stream: dict[str, Any]) -> str:
    health = stream.get("health") or {}
    state = health.get("state", "pending")
    reason = f" ({health['reason']})" if health.get("reason") else ""
    return (
        f"{stream['id']:<20} {state + reason:<26} {health.get('fps', 0):>5.1f} fps "
        f"{health.get('reconnects', 0):>3} reconnects  {stream['model']:<18} {stream['url']}"
    )


def _streams(settings: Settings, args: argparse.Namespace) -> int:
    from services.client import ApiError

    with _client(settings) as client:
        try:
            if args.action == "ls":
                for stream in client.list_streams():
                    print(_show(stream))
            elif args.action == "show":
                print(json.dumps(client.get(args.target), indent=2))
            elif args.action == "rm":
                client.delete(args.target)
                print(f"removed {args.target}")
            else:
                if args.target is None:
                    print("segstream streams add: give the camera URL", file=sys.stderr)
                    return 2
                options = {
                    "fps": args.fps,
                    "latency_budget_ms": args.latency_budget_ms,
                    "max_side": args.max_side,
                    "realtime": args.realtime,
                    "loop": args.loop,
                }
                stream = client.add(
                    args.target,
                    args.model,
                    id=args.id,
                    **{k: v for k, v in options.items() if v is not None},
                )
                print(_show(stream))
        except ApiError as exc:
            detail = exc.detail
            if isinstance(detail, list):
                detail = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in detail)
            print(f"segstream streams: {exc.status}: {detail}", file=sys.stderr)
            return 1
        except httpx.HTTPError as exc:
            print(
                f"segstream streams: the API at {client.url} did not answer: {exc}", file=sys.stderr
            )
            return 1
    return 0


def _watch(settings: Settings, args: argparse.Namespace) -> int:
    from services.client import ApiError
    from services.watch import watch

    with _client(settings) as client:
        try:
            return watch(
                client,
                args.stream,
                from_id=args.from_id,
                classes=args.classes.split(",") if args.classes else None,
                count=args.count,
                render=args.render,
            )
        except ApiError as exc:
            print(f"segstream watch: {exc}", file=sys.stderr)
            return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segstream",
        description="Video-analytics stream service: camera streams in, instance masks out.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    streams = sub.add_parser("streams", help="register, list, show or remove camera streams")
    streams.add_argument("action", choices=["add", "ls", "show", "rm"])
    streams.add_argument("target", nargs="?", help="add: the camera URL; show, rm: the id")
    streams.add_argument("--model", default="yolact_r18_demo", help="a registered model")
    streams.add_argument("--id", help="stream id (generated by default)")
    streams.add_argument("--fps", type=float, help="frames per second to segment (5)")
    streams.add_argument(
        "--latency-budget-ms", type=int, help="drop frames older than this (5000 for cameras)"
    )
    streams.add_argument("--max-side", type=int, help="shrink frames to this shorter side")
    streams.add_argument(
        "--realtime", action="store_true", default=None, help="a file: play it as a camera"
    )
    streams.add_argument("--loop", action="store_true", default=None, help="a file: loop it")
    streams.set_defaults(func=_streams)

    api = sub.add_parser("api", help="serve the REST API and event subscriptions")
    api.add_argument("--host", help="listen address (SEGSTREAM_HOST by default)")
    api.set_defaults(func=_api)

    watch = sub.add_parser("watch", help="print a stream's mask events as they come")
    watch.add_argument("stream", help="the stream id")
    watch.add_argument("--from-id", help="resume after this event id")
    watch.add_argument("--classes", help="only these classes (comma-separated)")
    watch.add_argument("--count", type=int, help="stop after this many events")
    watch.add_argument("--render", help="also draw the masks over the frames into this .mp4")
    watch.set_defaults(func=_watch)

    ingest = sub.add_parser("ingest", help="run an ingest worker (streams -> frames in Kafka)")
    ingest.add_argument("--worker-id", help="name in logs and stream status")
    ingest.add_argument("--read-timeout", type=float, default=5.0, help="seconds without data")
    ingest.add_argument(
        "--stall-timeout", type=float, default=10.0, help="seconds without a decoded frame"
    )
    ingest.set_defaults(func=_ingest)

    segment = sub.add_parser("segment", help="run a segment worker (frames -> masks in Redis)")
    segment.add_argument("--model", default="yolact_r18_demo", help="a registered model")
    segment.add_argument("--batch-size", type=int, default=8, help="frames per batch at most")
    segment.add_argument(
        "--batch-deadline-ms", type=int, default=50, help="wait this long to fill a batch"
    )
    segment.add_argument("--min-score", type=float, default=0.3, help="drop weaker instances")
    segment.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    segment.add_argument("--worker-id", help="name in logs")
    segment.set_defaults(func=_segment)

    demo = sub.add_parser(
        "demo", help="start the local infrastructure and push a synthetic camera through it"
    )
    demo.add_argument("--events", type=int, help="stop after this many events (Ctrl-C otherwise)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except (ValidationError, ConfigFileError) as exc:
        print(f"segstream: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(settings, args))
    except InfraError as exc:
        print(f"segstream: {exc}", file=sys.stderr)
        return 1
    except (DatasetError, WeightsError) as exc:
        print(f"segstream: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
