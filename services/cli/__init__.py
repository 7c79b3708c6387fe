"""The ``segstream`` command: :func:`build_parser` gathers the subcommands of the modules
beside this one (``local``: infra, ops, train, eval, run, demo; ``api_client``: streams,
watch; ``processes``: api, ingest, segment), and :func:`main` builds ``Settings`` once and
passes it to the chosen command's handler, ``handler(settings, args) -> exit status``.

Importing the CLI and building its parser imports neither torch nor segcore nor the
Kafka and Redis clients: each handler imports what its command needs when it runs, so
``segstream --help``, ``streams`` and ``watch`` start in a fraction of a second
(tests/unit/services/test_cli_imports.py holds it, bench/cli_start.py measures it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services.cli import api_client, local, processes
from services.cli.errors import CommandError

# Errors a command reports as one line and exit status 1, by module and name: naming them
# imports nothing, and an exception of one of them means its module is loaded.
REPORTED = (
    ("services.infra.errors", "InfraError"),
    ("segcore.data.coco", "DatasetError"),
    ("segcore.models.weights", "WeightsError"),
)


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


def reported(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the errors in :data:`REPORTED` (or a CommandError)."""
    if isinstance(exc, CommandError):
        return True
    for module, name in REPORTED:
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and isinstance(exc, kind):
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from services.common.settings import ConfigFileError, Settings

    try:
        settings = Settings()
    except (ValidationError, ConfigFileError) as exc:
        print(f"segstream: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(settings, args))
    except Exception as exc:
        if not reported(exc):
            raise
        print(f"segstream: {exc}", file=sys.stderr)
        return 1
