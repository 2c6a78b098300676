"""The CPU kernels side by side, measured by the suite itself: numba-cpu, numpy-flash, numpy-naive
and torch-sdpa at N = 1024..8192 (b1 h8 d64 float32, causal and not) plus the grouped-head and
decode cases of scenarios/default.toml. Writes a scenario file, runs `attnbench run` on it, reads
the records back with attnbench.load and prints GFLOP/s, fraction of the measured matmul roof,
ratio to torch-sdpa (its time over ours: > 1 is faster) and peak memory, as Markdown.

    .venv/bin/python benchmarks/cpu_kernels.py [--quick] [--out DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import attnbench

BACKENDS = ("numba-cpu", "numpy-flash", "numpy-naive", "torch-sdpa")
BASELINE = "torch-sdpa"
SCENARIO = """name = "cpu-kernels"
description = "CPU kernels: self and causal, grouped heads, decode (benchmarks/cpu_kernels.py)"
[base]
batch = 1
heads = 8
head_dim = 64
dtype = "float32"
[sweep]
seq_len = {sizes}
[[variant]]
name = "self and causal"
mask = ["none", "causal"]
[[variant]]
name = "grouped heads"
heads_q = 16
heads_kv = 4
mask = "causal"
seq_len = [512, 1024]
[[variant]]
name = "decode"
mask = "causal"
seq_q = 1
seq_kv = [1024, 4096]
"""


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (Linux), or "unknown"."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_suite(out: Path, quick: bool, threads: int | None) -> None:
    """Write the scenario next to the results and measure it with `attnbench run`."""
    out.mkdir(parents=True, exist_ok=True)
    sizes = [1024, 2048] if quick else [1024, 2048, 4096, 8192]
    toml = out.parent / f"{out.name}.toml"
    toml.write_text(SCENARIO.format(sizes=sizes))
    cmd = [sys.executable, "-m", "attnbench", "run", "-s", str(toml), "--out", str(out),
           "--overwrite", "--budget", "0.5" if quick else "1.5"]
    cmd += [a for b in BACKENDS for a in ("-b", b)]
    if threads:
        cmd += ["--threads", str(threads)]
    print(f"load before: {loadavg()}; running: {' '.join(cmd)}", file=sys.stderr)
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
    df = attnbench.load(out)
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
    ap.add_argument("--table-only", action="store_true", help="print the table of --out")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.table_only:
        run_suite(out, args.quick, args.threads)
    print(f"cores {os.cpu_count()}, load average now {loadavg()}\n")
    print(table(out))


if __name__ == "__main__":
    main()
