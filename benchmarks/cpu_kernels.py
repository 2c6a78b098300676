"""The CPU kernels side by side, measured by the suite itself: numba-cpu, numpy-flash, numpy-naive
and torch-sdpa at N = 1024..8192 (b1 h8 d64 float32, causal and not) plus the grouped-head and
decode cases of scenarios/default.toml. Writes a scenario file, runs `attnbench run` on it, reads
the records back with attnbench.load and prints GFLOP/s, fraction of the measured matmul roof,
ratio to torch-sdpa (its time over ours: > 1 is faster) and peak memory, as Markdown. Each
case is its own run (all four backends back to back), so a drifting load shifts them alike.

    .venv/bin/python benchmarks/cpu_kernels.py [--quick] [--sizes N ...] [--out DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

import attnbench

BACKENDS = ("numba-cpu", "numpy-flash", "numpy-naive", "torch-sdpa")
BASELINE = "torch-sdpa"
SCENARIO = """name = "cpu-kernels"
description = "CPU kernels, one case (benchmarks/cpu_kernels.py)"
[base]
batch = 1
head_dim = 64
dtype = "float32"
{case}
"""


def cases(quick: bool, sizes: list[int] | None = None) -> list[str]:
    """One TOML [base] body per case: self and causal per N, grouped heads, decode; with
    `sizes`, the self and causal cases of those N only."""
    if sizes:
        return [f'heads = 8\nseq_len = {n}\nmask = "{m}"' for n in sizes
                for m in ("none", "causal")]
    sizes = [1024, 2048] if quick else [1024, 2048, 4096, 8192]
    out = [f'heads = 8\nseq_len = {n}\nmask = "{m}"' for n in sizes for m in ("none", "causal")]
    out += [f'heads_q = 16\nheads_kv = 4\nseq_len = {n}\nmask = "causal"' for n in (512, 1024)]
    out += [f'heads = 8\nseq_q = 1\nseq_kv = {n}\nmask = "causal"' for n in (1024, 4096)]
    return out


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (Linux), or "unknown"."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_suite(out: Path, quick: bool, threads: int | None, sizes: list[int] | None) -> None:
    """One `attnbench run` per case, every backend on it back to back, so that the ratios to
    torch-sdpa compare moments seconds apart even while the load of the machine drifts."""
    out.mkdir(parents=True, exist_ok=True)
    print(f"load before: {loadavg()}", file=sys.stderr)
    for i, body in enumerate(cases(quick, sizes)):
        toml = out / f"case{i}.toml"
        toml.write_text(SCENARIO.format(case=body))
        cmd = [sys.executable, "-m", "attnbench", "run", "-s", str(toml), "--out",
               str(out / f"case{i}"), "--overwrite", "--budget", "0.5" if quick else "1.0"]
        cmd += [a for b in BACKENDS for a in ("-b", b)]
        if threads:
            cmd += ["--threads", str(threads)]
        print(f"running: {' '.join(cmd)}", file=sys.stderr)
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    print(f"load after: {loadavg()}", file=sys.stderr)


def label(r: dict) -> str:
    if r["heads_q"] != r["heads_kv"]:
        return f"gqa h{r['heads_q']}:{r['heads_kv']} N={r['seq_kv']} {r['mask']}"
    if r["seq_q"] == 1:
        return f"decode q1 k{r['seq_kv']} {r['mask']}"
    return f"N={r['seq_kv']} {r['mask']}"


def table(out: Path) -> str:
    """The Markdown table of one run: a row per (case, backend)."""
    runs = sorted(p.parent for p in out.glob("case*/records.jsonl"))
    df = pd.concat([attnbench.load(r) for r in runs], ignore_index=True)
    df = df[df.backend.isin(BACKENDS)].sort_values(
        ["heads_kv", "seq_q", "mask", "seq_kv", "backend"],
        ascending=[False, False, False, True, True])
    base = df[df.backend == BASELINE].set_index("case_id")["timing.median_ms"].to_dict()
    lines = ["| case | backend | median ms | GFLOP/s | of roof | × torch-sdpa | peak MiB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in df.to_dict("records"):
        if r["status"] != "ok":
            lines.append(f"| {label(r)} | {r['backend']} | {r['status']} | | | | |")
            continue
        ms = r["timing.median_ms"]
        ratio = base.get(r["case_id"], float("nan")) / ms
        peak = (r["memory.peak_bytes"] or 0) / 2**20
        lines.append(f"| {label(r)} | {r['backend']} | {ms:.2f} | {r['gflops_per_s']:.1f} | "
                     f"{r['roof_fraction']:.2f} | {ratio:.2f} | {peak:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 1024, 2048 only, short budget")
    ap.add_argument("--out", default="results/cpu-kernels", help="result folder")
    ap.add_argument("--threads", type=int, default=None, help="threads (default all cores)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="only the self and causal cases of these N (e.g. --sizes 4096)")
    ap.add_argument("--table-only", action="store_true", help="print the table of --out")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.table_only:
        run_suite(out, args.quick, args.threads, args.sizes)
    print(f"cores {os.cpu_count()}, load average now {loadavg()}\n")
    print(table(out))


if __name__ == "__main__":
    main()
