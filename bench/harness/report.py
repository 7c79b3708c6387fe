"""A benchmark's results: one row per result, each a ratio against its baseline and a goal."""

from __future__ import annotations

from dataclasses import dataclass

OTHER_LOAD_LIMIT = 0.15  # cores of CPU used by other work before the figures are doubted


@dataclass
class Result:
    """One row of the results table."""

    name: str
    baseline_name: str
    baseline: str
    measured: str
    ratio: str
    goal: str
    ok: bool | None  # None: not measured


def print_results(results: list[Result], seconds: float, other_cores: float) -> bool:
    """Print the results as a Markdown table, with a warning when other work on the machine
    took more than ``OTHER_LOAD_LIMIT`` cores (``other_cores``: the busiest phase's); True when
    every goal was met."""
    print(f"\n## Results ({seconds:.0f} s in all)")
    header = ("result", "baseline", "baseline value", "measured", "ratio", "goal", "verdict")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        verdict = "not measured" if r.ok is None else ("PASS" if r.ok else "MISS")
        cells = (r.name, r.baseline_name, r.baseline, r.measured, r.ratio, r.goal, verdict)
        print("| " + " | ".join(cells) + " |")
    if other_cores > OTHER_LOAD_LIMIT:
        print(
            f"WARNING: other work on the machine (or the hypervisor) took up to "
            f"{other_cores:.2f} of a core "
            "during a phase: these figures are not reliable; run again on a quiet machine"
        )
    return all(r.ok for r in results)
