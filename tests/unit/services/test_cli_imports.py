"""The API commands of ``segstream`` import neither torch nor segcore: a fresh interpreter
imports the CLI, prints its help, parses every command, runs ``streams`` (against an address
where no API answers) and imports what ``watch`` and ``infra`` run, then lists what it
loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = r"""
import contextlib, io, json, sys

from services.cli import build_parser, main

help_text = io.StringIO()
with contextlib.redirect_stdout(help_text):
    try:
        main(["--help"])
    except SystemExit as exc:
        help_code = exc.code
parser = build_parser()
for argv in (
    ["streams", "ls"], ["streams", "add", "rtsp://cam/1", "--fps", "2"], ["streams", "rm", "x"],
    ["watch", "door", "--count", "3", "--classes", "person"], ["infra", "status"],
    ["infra", "up"], ["api"], ["ingest"], ["segment"], ["run", "a.mp4"], ["eval", "--model", "m"],
):
    parser.parse_args(argv)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    ls_code = main(["streams", "ls"])
    show_code = main(["streams", "show", "door"])
import services.watch  # what `watch` runs (printing events; --render imports more)
import services.infra  # what `infra` runs
print(json.dumps({
    "help_code": help_code, "help": help_text.getvalue(), "ls_code": ls_code,
    "show_code": show_code, "err": err.getvalue(),
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "segcore", "cuda_ext")),
}))
"""


def test_api_commands_import_neither_torch_nor_segcore() -> None:
    env = dict(os.environ, SEGSTREAM_API_TOKEN="t" * 20, SEGSTREAM_API_URL="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["help_code"] == 0
    assert "streams" in result["help"] and "watch" in result["help"]
    # The commands ran: each reached the (absent) API and said so.
    assert result["ls_code"] == 1 and result["show_code"] == 1
    assert result["err"].count("the API at http://127.0.0.1:9 did not answer") == 2
    assert result["loaded"] == []
