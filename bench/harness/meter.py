"""Where the CPU went during a phase (per process, from /proc, and for the rest of the
machine), and the median time of a call."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def own_cpu_seconds() -> float:
    """This process's CPU time and that of its children waited for (ffmpeg runs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def machine_seconds() -> tuple[float, float]:
    """(busy, stolen by the hypervisor) CPU seconds of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq) / CLOCK_TICK, steal / CLOCK_TICK


@dataclass
class Usage:
    seconds: float
    cpu: dict[str, float]
    other: float  # CPU seconds of everything else on the machine
    steal: float  # CPU seconds the hypervisor gave to other machines

    def report(self, what: str, frames: int = 0) -> str:
        """Each process's CPU in % of one core (and ms per frame when ``frames``)."""
        parts = []
        for name, used in [
            *self.cpu.items(),
            ("other work on the machine", self.other),
            ("stolen by the hypervisor", self.steal),
        ]:
            share = f"{name} {100 * used / self.seconds:.0f}%"
            parts.append(share + (f" ({1000 * used / frames:.1f} ms/frame)" if frames else ""))
        return f"CPU over {self.seconds:.1f} s of {what} (% of one core): " + ", ".join(parts)

    @property
    def other_cores(self) -> float:
        return (self.other + self.steal) / self.seconds


Sample = tuple[float, tuple[float, float], dict[str, float]]


class Meter:
    """CPU time of named processes (``pids``: name -> pid), and of the rest of the machine,
    over a phase; keeps the busiest phase's share of other work for the final verdict."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.worst_other = 0.0

    def _sample(self) -> Sample:
        cpu = {"bench": own_cpu_seconds()}
        cpu.update({name: cpu_seconds(pid) for name, pid in self.pids.items()})
        return time.monotonic(), machine_seconds(), cpu

    def start(self) -> Sample:
        return self._sample()

    def stop(self, started: Sample) -> Usage:
        t0, (busy0, steal0), cpu0 = started
        t1, (busy1, steal1), cpu1 = self._sample()
        cpu = {name: cpu1[name] - cpu0.get(name, cpu1[name]) for name in cpu1}
        other = max(0.0, busy1 - busy0 - sum(cpu.values()))
        usage = Usage(t1 - t0, cpu, other, steal1 - steal0)
        self.worst_other = max(self.worst_other, usage.other_cores)
        return usage


def median_s(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``fn`` after one discarded call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
