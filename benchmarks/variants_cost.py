"""The cost of each variant against dense causal, per backend: the table of docs/variants.md.

    .venv/bin/python benchmarks/variants_cost.py [ROUNDS] [BACKEND ...]

The cases are benchmarks/variants_cost.toml (b2 h8 n1024 d64 float32; `attnbench check -s
benchmarks/variants_cost.toml` checks them). On a shared machine the load drifts over minutes,
so the cases are timed interleaved: each round calls every case once, and a variant's cost is
the median over rounds of its time divided by dense causal's time in the same round.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.scenario import load_scenario
from attnbench.verify.inputs import make_inputs, reference_arrays

SCENARIO = Path(__file__).with_suffix(".toml")


def label(case: Case) -> str:
    """The mask and variant part of the case id ('causal-w256:inf'), with head_dim for dv."""
    text = case.id.split(f"-{case.dtype}-", 1)[1].removesuffix(f"-{case.mode}")
    return f"{text} (d{case.head_dim})" if "dv" in case.variants else text


def timed(fn) -> float:
    """Seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(name: str, cases: list[Case], rounds: int) -> dict[str, list[float]]:
    """Per case id, the seconds of one call in each round (after one warm-up call each)."""
    backend = build_registry(autoload=False).get(name)
    fns = {c.id: backend.prepare(make_inputs(c, reference_arrays(c, 0), backend.framework))
           for c in cases}
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {cid: [] for cid in fns}
    for _ in range(rounds):
        for cid, fn in fns.items():
            times[cid].append(timed(fn))
    return times


def table(cases: list[Case], results: dict[str, dict[str, list[float]]]) -> str:
    """Median ms and the median per-round ratio to dense causal, per case and backend."""
    dense = next(c.id for c in cases if not c.variants and c.mask == "causal")
    head = "| case | " + " | ".join(f"{b} ms | × causal" for b in results) + " |"
    lines = [head, "| --- |" + " ---: | ---: |" * len(results)]
    for case in cases:
        cells = []
        for times in results.values():
            ratios = [t / t0 for t, t0 in zip(times[case.id], times[dense], strict=True)]
            cells += [f"{statistics.median(times[case.id]) * 1e3:.0f}",
                      f"{statistics.median(ratios):.2f}"]
        lines.append(f"| {label(case)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 7
    names = argv[1:] or ["numpy-naive", "torch-naive"]
    cases = load_scenario(SCENARIO).cases("cpu")
    results = {n: measure(n, cases, rounds) for n in names}
    print(table(cases, results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
