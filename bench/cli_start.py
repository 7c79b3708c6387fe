"""Start time of ``segstream`` commands that need no model, against a bare interpreter.

    .venv/bin/python bench/cli_start.py [--rounds 9] [--tree PATH]

Each round runs, in a fresh process and in turn: ``python -c pass`` (the baseline: the
interpreter's own start), ``python -m services.cli --help`` and ``python -m services.cli
streams ls`` (with ``SEGSTREAM_API_URL`` at a loopback port where nothing listens: the
connection is refused at once, so the time is the command's start). Printed per command: the
median wall time over the rounds and its ratio to the baseline's median in the same run.
``--tree`` measures the ``services`` package of another checkout (put first on
``PYTHONPATH``), e.g. an older commit extracted with ``git archive``, with this
environment's packages.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "segstream --help": ["-m", "services.cli", "--help"],
    "segstream streams ls": ["-m", "services.cli", "streams", "ls"],
}


def run_once(args: list[str], tree: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], cwd=tree, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout to measure")
    args = parser.parse_args()
    tree = args.tree.resolve()
    env = dict(
        os.environ,
        PYTHONPATH=str(tree),
        SEGSTREAM_API_TOKEN="t" * 20,
        SEGSTREAM_API_URL="http://127.0.0.1:9",
    )
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for name, argv in COMMANDS.items():  # warm the page cache and the bytecode
        run_once(argv, tree, env)
        del name
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            times[name].append(run_once(argv, tree, env))
    base = statistics.median(times["python -c pass"])
    print(f"tree: {tree}  rounds: {args.rounds}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<22} median {median * 1000:7.0f} ms  {median / base:6.1f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
