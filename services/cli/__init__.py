"""The ``segstream`` command: :func:`build_parser` gathers the subcommands of the modules
beside this one (``local``: infra, ops, train, eval, run, demo; ``api_client``: streams,
watch; ``processes``: api, ingest, segment), and :func:`main` builds ``Settings`` once and
passes it to the chosen command's handler, ``handler(settings, args) -> exit status``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from segcore.data.coco import DatasetError
from segcore.models.weights import WeightsError
from services.cli import api_client, local, processes
from services.common.settings import ConfigFileError, Settings
from services.infra.errors import InfraError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segstream",
        description="Video-analytics stream service: camera streams in, instance masks out.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local.add_commands(sub)
    api_client.add_commands(sub)
    processes.add_commands(sub)
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
