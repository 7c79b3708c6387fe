"""CPU of the local Kafka broker carrying frames, with its JVM options against the JVM's
defaults, measured in the same run.

    .venv/bin/python bench/broker.py [--frames N] [--rounds R]   (or -m bench.broker)

The broker of ``segstream infra up`` shares its cores with inference on a laptop and in
the tests; every CPU second it takes slows a model running on all cores. For each JVM
option set (the default of ``Settings.kafka_jvm_options`` and the baseline ``-XX:+UseG1GC``,
which is the JVM's own default collector with its default tiered compilation) it starts a
broker of its own on free loopback ports, then per round: produces ``--frames`` records of
25 KB as the ingest worker does (kafka-python, 1 MiB batches, linger 2 ms, a pause every 10
records), consumes them as a segment worker does (batches of 8, an asynchronous commit
after each) and reads the broker's CPU time from /proc. Printed per round: CPU per frame
above the broker's idle CPU (measured for 3 s after the round), and the idle CPU itself.
The first round is the JVM's warm-up (classes loaded, code compiled) and is printed apart;
the ratio is over the later rounds. The option sets alternate (baseline, candidate,
baseline, candidate) so a drift of the machine affects both.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file (`python bench/broker.py`), sys.path starts with bench/: put the repository
# root there instead, as `python -m bench.broker` does, so that `bench` imports as a package.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import os
import shutil
import statistics
import tempfile
import time

from bench.harness import cpu_seconds
from services.common.kafka import bootstrap_topics, frames_spec, make_consumer
from services.common.kafka import make_producer as kafka_producer
from services.common.settings import Settings
from services.infra import Infra, fresh_settings

BASELINE = "-XX:+UseG1GC"
CANDIDATE = Settings.model_fields["kafka_jvm_options"].default
FRAME_BYTES = 25_000  # a 320x240 JPEG q90 frame


def one_round(settings: Settings, pid: int, frames: int, group: str) -> tuple[float, float]:
    """(CPU ms per frame above idle, idle CPU in % of a core) of one produce+consume round."""
    topic = frames_spec(settings, "bench").name
    payload = os.urandom(FRAME_BYTES)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    producer = kafka_producer(
        settings, linger_ms=2, compression_type=None, batch_size=1 << 20, retries=5
    )
    for i in range(frames):
        producer.send(topic, key=b"camera", value=payload)
        if i % 10 == 9:
            time.sleep(0.01)
    producer.flush(timeout=30)
    producer.close()
    consumer = make_consumer(settings, topic, group_id=group)
    got = 0
    deadline = time.monotonic() + 60
    while got < frames:
        if time.monotonic() > deadline:
            raise RuntimeError(f"consumed {got} of {frames} records in 60 s")
        for records in consumer.poll(timeout_ms=1000, max_records=8).values():
            got += len(records)
        consumer.commit_async()
    consumer.commit()
    consumer.close()
    busy, elapsed = cpu_seconds(pid) - cpu0, time.monotonic() - t0
    idle0 = cpu_seconds(pid)
    time.sleep(3)
    idle = (cpu_seconds(pid) - idle0) / 3
    return 1000 * (busy - idle * elapsed) / frames, 100 * idle


def measure(options: str, frames: int, rounds: int, tag: str) -> list[tuple[float, float]]:
    work = Path(tempfile.mkdtemp(prefix="segstream-broker-bench-"))
    settings = fresh_settings(
        work / "infra", namespace=f"broker-bench-{tag}", kafka_jvm_options=options
    )
    infra = Infra(settings)
    try:
        infra.up(log=False)
        kafka = next(c for c in infra.components if c.name == "kafka")
        record = kafka.proc.record()
        if record is None:
            raise RuntimeError("the broker did not start")
        bootstrap_topics(settings, [frames_spec(settings, "bench")])
        time.sleep(3)
        results = []
        for r in range(rounds):
            per_frame, idle = one_round(settings, record.pid, frames, f"bench-{tag}-{r}")
            print(
                f"  {options}: round {r}{' (warm-up)' if r == 0 else ''}: "
                f"{per_frame:.2f} ms CPU per frame above idle; idle {idle:.1f}% of a core",
                flush=True,
            )
            results.append((per_frame, idle))
        return results
    finally:
        infra.down()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=600, help="records per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per broker (first: warm-up)")
    parser.add_argument("--repeats", type=int, default=2, help="brokers per option set")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first is the warm-up)")
    runs: dict[str, list[tuple[float, float]]] = {BASELINE: [], CANDIDATE: []}
    warm: dict[str, list[float]] = {BASELINE: [], CANDIDATE: []}
    for repeat in range(args.repeats):
        for index, options in enumerate((BASELINE, CANDIDATE)):
            print(f"broker {repeat * 2 + index + 1} of {args.repeats * 2}: {options}")
            results = measure(options, args.frames, args.rounds, f"{repeat}{index}")
            warm[options].append(results[0][0])
            runs[options].extend(results[1:])
    print(f"\n## Broker CPU, {args.frames} frames of {FRAME_BYTES // 1000} KB per round")
    print("| JVM options | warm-up round ms/frame | later rounds ms/frame | idle % of a core |")
    print("|---|---:|---:|---:|")
    mean = {}
    for options in (BASELINE, CANDIDATE):
        per_frame = statistics.mean(p for p, _ in runs[options])
        idle = statistics.mean(i for _, i in runs[options])
        mean[options] = (per_frame, idle)
        print(
            f"| `{options}` | {statistics.mean(warm[options]):.2f} | {per_frame:.2f} | {idle:.1f} |"
        )
    base, cand = mean[BASELINE], mean[CANDIDATE]
    print(
        f"\nCPU per frame, baseline over candidate: {base[0] / cand[0]:.2f}x; "
        f"idle CPU: {base[1] / max(cand[1], 1e-9):.2f}x; warm-up round: "
        f"{statistics.mean(warm[BASELINE]) / statistics.mean(warm[CANDIDATE]):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
