"""flex-attention's compiles over a scenario: dynamic shapes (shipped) against one graph per shape.

Usage: python benchmarks/flex_compiles.py [-s variants] [--device cpu] [--modes dynamic,static]

Each mode runs in a fresh process with an empty inductor cache (TORCHINDUCTOR_CACHE_DIR), as a
`check` worker does: every case of the scenario flex-attention supports, one after another,
through attnbench's own execute() (agreement with the oracle, no timing). The backend reports
its compiles, compile time and block-mask set-up (Inputs.report); the table sums them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MODES = {"dynamic": True, "static": False, "default": None}  # torch.compile's dynamic=


def child(scenario: str, device: str, mode: str) -> None:
    """Run the cases in this process; print one JSON line per case and a summary."""
    from attnbench.backends.flex_attention import FlexAttention

    from attnbench.run.execute import CaseData, Options, execute
    from attnbench.scenario import resolve_scenario

    seen: list = []

    class Flex(FlexAttention):
        dynamic = MODES[mode]

        def prepare(self, inputs):  # keep each case's inputs, to read what it reported
            seen.append(inputs)
            return super().prepare(inputs)

    flex, t0 = Flex(), time.perf_counter()
    for case in resolve_scenario(scenario).cases(device):
        if flex.unsupported(case):
            continue
        rec = execute(flex, scenario, case, lambda c=case: CaseData(c, seed=0),
                      Options(time_it=False, memory=False))
        print(json.dumps({"case": case.id, "status": rec["status"],
                          "first_call_ms": rec.get("first_call_ms"), **seen[-1].reported}),
              flush=True)
    print(json.dumps({"summary": mode, "wall_s": time.perf_counter() - t0}), flush=True)


def run_mode(args: argparse.Namespace, mode: str) -> dict:
    """One mode in a fresh process with an empty inductor cache: the sums of its cases."""
    with tempfile.TemporaryDirectory(prefix="flex-inductor-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, __file__, "--child", mode, "-s", args.scenario,
                              "--device", args.device], env=env, capture_output=True,
                             text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    cases = [r for r in rows if "case" in r]
    return {"mode": mode, "cases": len(cases),
            "ok": sum(r["status"] == "ok" for r in cases),
            "compiles": sum(r.get("compiles") or 0 for r in cases),
            "recompiled": sum(bool(r.get("recompiled")) for r in cases),
            "compile_s": sum(r.get("compile_ms") or 0 for r in cases) / 1e3,
            "setup_s": sum(r.get("setup_ms") or 0 for r in cases) / 1e3,
            "wall_s": rows[-1]["wall_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-s", "--scenario", default="variants")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default="dynamic,static")
    ap.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.scenario, args.device, args.child)
        return 0
    print("| mode | cases | ok | compiles | cases that recompiled | compile (s) | block masks (s) "
          "| wall (s) |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in args.modes.split(","):
        r = run_mode(args, mode)
        print(f"| {r['mode']} | {r['cases']} | {r['ok']} | {r['compiles']} | {r['recompiled']} "
              f"| {r['compile_s']:.0f} | {r['setup_s']:.2f} | {r['wall_s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
