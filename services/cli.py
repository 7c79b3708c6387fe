"""The ``segstream`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from services.common.settings import ConfigFileError, Settings
from services.infra.errors import InfraError


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

    return run_demo(settings, frames=args.frames)


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

    demo = sub.add_parser(
        "demo", help="start the local infrastructure and push a synthetic camera through it"
    )
    demo.add_argument("--frames", type=int, default=90, help="frames of synthetic video")
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


if __name__ == "__main__":
    sys.exit(main())
