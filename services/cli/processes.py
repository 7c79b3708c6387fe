"""The long-running processes: ``api``, ``ingest`` and ``segment``. Each logs JSON lines,
serves ``/metrics`` on ``SEGSTREAM_METRICS_PORT`` and stops cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.common.metrics import PipelineMetrics
    from services.common.settings import Settings


def _serve(settings: Settings, process: str) -> tuple[threading.Event, PipelineMetrics]:
    """Logs, /metrics and SIGTERM/SIGINT handling of a long-running worker process."""
    from segcore.runtime import keep_heap
    from services.common import logs
    from services.common.metrics import PipelineMetrics
    from services.infra.errors import InfraError

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
    from services.ingest.runner import IngestOptions
    from services.ingest.worker import IngestWorker

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


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = sub.add_parser("api", help="serve the REST API and event subscriptions")
    api.add_argument("--host", help="listen address (SEGSTREAM_HOST by default)")
    api.set_defaults(func=_api)

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
