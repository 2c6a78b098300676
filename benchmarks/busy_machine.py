"""Busy-machine check: the same run alone and beside CPU hogs, and what attnbench said of each.

Usage: python benchmarks/busy_machine.py [--hogs 2] [--budget 0.5] [-b BACKEND ...] [-s default]

Runs `attnbench run` twice into a temporary folder with a roof cache of its own: first alone
(its roofs become the best known), then beside HOGS processes spinning on the CPU. Prints a
Markdown table per run: start and end roof, load before the run, other processes' cores and
steal over the run, noisy records, the verdict and its reasons, and the cost of the readings
and of the end roof. Readings before each run show what else the host was doing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from attnbench.measure import contention


def run(out: Path, args: argparse.Namespace, cache: Path) -> tuple[dict[str, Any], float]:
    """One attnbench run; its run.json and wall seconds."""
    cmd = [sys.executable, "-m", "attnbench", "run", "--out", str(out), "--budget",
           str(args.budget)] + [x for s in args.scenario for x in ("-s", s)] + [
           x for b in args.backend for x in ("-b", b)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env={**os.environ, "ATTNBENCH_ROOF_CACHE": str(cache)},
                          capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads((out / "run.json").read_text()), wall


def row(name: str, meta: dict[str, Any], wall: float, before: dict[str, Any]) -> list[str]:
    c, verdict = meta["contention"], meta["busy"]
    start = c["roof_start"].get("cpu", {}).get("float32")
    end = c["roof_end"].get("cpu", {}).get("float32")
    best = c["roof_best_known"].get("cpu", {}).get("float32", {}).get("flops_per_s")
    load = c["before"]["load"]
    recs = c["records"]
    return [name, f"{before['others_cores']:.2f}", f"{load[0]:.2f}" if isinstance(load, list)
            else "–", _gf(start), _gf(end), _gf(best), f"{c['run']['others_cores']:.2f}",
            f"{c['run']['steal_pct']:.1f}", f"{recs['noisy']}/{recs['timed']}",
            f"{wall:.0f}", str(verdict["busy"]), f"{c['cost_s']['readings'] * 1e3:.0f}",
            f"{c['cost_s']['end_roof']:.2f}", "; ".join(verdict["reasons"]) or "–"]


def _gf(x: float | None) -> str:
    return "–" if not x else f"{x / 1e9:.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("-s", "--scenario", action="append", default=[])
    p.add_argument("-b", "--backend", action="append", default=[])
    args = p.parse_args()
    args.scenario = args.scenario or ["default"]
    args.backend = args.backend or ["numpy-naive", "torch-sdpa"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "roofs.json"
        before = contention.probe(2.0)
        meta, wall = run(Path(tmp) / "alone", args, cache)
        rows.append(row("alone", meta, wall, before))
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.hogs)]
        try:
            before = contention.probe(2.0)
            meta, wall = run(Path(tmp) / "hogged", args, cache)
            rows.append(row(f"beside {args.hogs} hogs", meta, wall, before))
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    heads = ["run", "others before (cores)", "load before", "roof start GFLOP/s",
             "roof end", "best known", "others during (cores)", "steal %", "noisy", "wall s",
             "busy", "readings ms", "end roof s", "reasons"]
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
