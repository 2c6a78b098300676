"""The matmul roof and the cores' rate (one thread's best times the cores), idle and beside hogs.

Usage: python benchmarks/roof_under_load.py [--hogs 6] [--repeats 3] [--seconds 0.3]

Each reading is `measure_roofs("cpu", ["float32"])` in a fresh process, as a run's roof worker
takes it: first with nothing else started, then beside HOGS processes looping torch matmuls
(each with torch's default threads, as pytest-xdist workers or other runs would be). Prints a
Markdown table: the float32 roof, one core's rate, the cores' rate, and how long the reading
took. run/outcome.py judges impossible throughputs against the larger of roof and cores' rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

HOG = "import torch\na = torch.randn(256, 256)\nwhile True:\n    a @ a\n"
READ = ("import json, time\nfrom attnbench.measure.roof import measure_roofs\n"
        "t = time.perf_counter()\nr = measure_roofs('cpu', ['float32'], {s})\n"
        "print(json.dumps({{'roof': r['float32'], 'cores': r.get('cores'), "
        "'s': time.perf_counter() - t}}))\n")


def reading(seconds: float) -> dict:
    out = subprocess.run([sys.executable, "-c", READ.format(s=seconds)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def rows(name: str, n: int, seconds: float) -> list[str]:
    out = []
    for i in range(n):
        r = reading(seconds)
        c = r["cores"] or {}
        out.append(f"| {name} #{i + 1} | {r['roof'] / 1e9:.3g} | "
                   f"{c.get('per_core_flops_per_s', 0) / 1e9:.3g} | {c.get('cores', '–')} | "
                   f"{c.get('flops_per_s', 0) / 1e9:.3g} | {r['s']:.1f} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hogs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=0.3)
    a = p.parse_args()
    lines = ["| machine | float32 roof GFLOP/s | one core GFLOP/s | cores | cores' rate "
             "GFLOP/s | reading s |", "|---|--:|--:|--:|--:|--:|"]
    lines += rows("idle", a.repeats, a.seconds)
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(a.hogs)]
    try:
        time.sleep(3)
        lines += rows(f"{a.hogs} torch hogs", a.repeats, a.seconds)
    finally:
        for h in hogs:
            h.kill()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
