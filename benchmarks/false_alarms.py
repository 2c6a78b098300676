"""False-alarm and power study of the forward pass rule (verify/rounding.py, verify/bound.py).

    .venv/bin/python benchmarks/false_alarms.py [--quick] [--out FILE.json] [--markdown]
        [--details FILE.jsonl [--resume]]

Correct but differently rounded implementations (benchmarks/alarm_impls.py: naive in the dtype,
terms in the dtype, math-SDPA's sqrt(scale) prescale, a fused kernel, FlashAttention-2's online
loop in blocks of 64 and 128, torch SDPA math and flash on the CPU, float64 then cast, and the
shipped backends on the cases small enough to run whole) must all pass; planted bugs
(benchmarks/alarm_bugs.py) must be caught wherever their effect exceeds rounding. Each is judged
exactly as `attnbench check` judges an output, on sampled query rows with every key (attention
rows are independent), in float32, float16, bfloat16 and float64 (the control).

A bug is *below rounding* on a case when its own effect, computed in float64, is within what the
worst correct implementation errs there by every statistic of the rule (the per-element,
per-head L2 and per-head scale ratios); otherwise it is *above rounding*, and *missed* when it
passes anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from alarm_bugs import BUG_INPUTS, BUGS  # noqa: E402
from alarm_grid import band, cases, sample_rows  # noqa: E402
from alarm_impls import CORRECT, Rows  # noqa: E402
from alarm_summary import CHECKS, markdown, summarise  # noqa: E402

from attnbench.case import Case  # noqa: E402
from attnbench.verify import bound  # noqa: E402
from attnbench.verify.rounding import Model, oracle_and_model  # noqa: E402

TORCH = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
         "bfloat16": torch.bfloat16}
SHIPPED = ["numpy-naive", "numba-cpu", "numpy-flash", "torch-naive", "torch-sdpa",
           "torch-sdpa-math", "torch-sdpa-flash"]
WHOLE_LIMIT = 2**20  # score entries per head up to which the shipped backends run whole


def run_rows(impl, arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray,
             dtype: torch.dtype) -> np.ndarray | None:
    """An implementation on the sampled rows of every batch element, as float64."""
    parts = []
    for b in range(case.batch):
        q = torch.from_numpy(arrays["q"][b:b + 1][:, :, rows]).to(dtype)
        k, v = (torch.from_numpy(arrays[n][b:b + 1]).to(dtype) for n in ("k", "v"))
        out = impl(q, k, v, Rows(case, b, rows, arrays.get("bias")))
        if out is None:
            return None
        parts.append(out.to(torch.float64).numpy())
    return np.concatenate(parts)


def judged(got: np.ndarray, model: Model) -> dict[str, Any]:
    entry = bound.judge(got, int(np.size(got) - np.isfinite(got).sum()), model)
    return {"passed": entry["passed"], "ratio": entry["error_over_bound"],
            "checks": entry["checks"], "worst": entry["worst"]}


def shipped_outputs(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """The shipped backends' outputs on the compared rows, for cases small enough to run whole."""
    if case.seq_q * case.seq_kv > WHOLE_LIMIT or len(rows) != case.seq_q:
        return {}
    from attnbench.plugin.registry import build_registry
    from attnbench.verify import agreement, layouts
    from attnbench.verify.inputs import make_inputs

    reg = build_registry([], autoload=False)
    out = {}
    for name in SHIPPED:
        backend = reg.get(name)
        if backend.unsupported(case):
            continue
        got = backend.prepare(make_inputs(case, arrays, backend.framework))()
        out[name] = layouts.padded_output(agreement.to_numpy64(got), case)
    return out


def baselines(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray
              ) -> dict[str, np.ndarray]:
    from attnbench.verify.baseline import baseline_output

    fws = ["torch"] + (["numpy"] if case.dtype != "bfloat16" else [])
    return {f"baseline-{fw}": baseline_output(arrays, case, rows, fw) for fw in fws}


def evaluate(case: Case, seed: int, rows_cap: int) -> dict[str, Any]:
    """Every correct implementation and every bug that applies, judged on one case."""
    from alarm_grid import label

    arrays = reference_arrays_for(case, seed)
    rows = sample_rows(case, rows_cap, seed)
    t0 = time.perf_counter()
    model = oracle_and_model(arrays, case, rows)
    model_s = time.perf_counter() - t0
    dt = TORCH[case.dtype]
    correct = {}
    for name, impl in CORRECT.items():
        got = run_rows(impl, arrays, case, rows, dt)
        if got is not None:
            correct[name] = judged(got, model)
    for name, got in {**shipped_outputs(arrays, case, rows),
                      **baselines(arrays, case, rows)}.items():
        correct[name] = judged(got, model)
    worst = {c: max(r["checks"][c] for r in correct.values()) for c in CHECKS}
    bugs = {}
    for name, (impl, applies) in BUGS.items():
        if not applies(case, rows):
            continue
        bug_arrays = BUG_INPUTS[name](arrays, case) if name in BUG_INPUTS else arrays
        got = judged(run_rows(impl, bug_arrays, case, rows, dt), model)
        effect = judged(run_rows(impl, bug_arrays, case, rows, torch.float64), model)
        excess = max(effect["checks"][c] / worst[c] if worst[c] > 0 else
                     (np.inf if effect["checks"][c] > 0 else 0.0) for c in worst)
        got["class"] = ("caught" if not got["passed"] else
                        "missed" if excess > 1 else "below")
        got["effect"], got["excess"] = effect["checks"], excess
        bugs[name] = got
    return {"case": case.id, "label": label(case), "dtype": case.dtype, "band": band(case),
            "rows": int(len(rows)), "model_s": round(model_s, 3), "correct": correct,
            "worst_correct": worst, "bugs": bugs}


def reference_arrays_for(case: Case, seed: int) -> dict[str, np.ndarray]:
    from attnbench.verify.inputs import reference_arrays

    return reference_arrays(case, seed)


def _done(details: Path | None, grid: list[Case]) -> list[dict[str, Any]]:
    """The results --details holds for cases of this grid."""
    if details is None or not details.exists():
        return []
    ids = {c.id for c in grid}
    done = [json.loads(x) for x in details.read_text().splitlines() if x.strip()]
    return [r for r in done if r["case"] in ids]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small grid (a few minutes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=128, help="query rows sampled per case")
    ap.add_argument("--dtype", action="append", help="only these dtypes (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    ap.add_argument("--markdown", action="store_true", help="print the tables for the docs")
    ap.add_argument("--details", type=Path, default=None, help="every case's result (JSONL)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the cases --details already holds and run the others")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    grid = [c for c in cases(args.quick) if not args.dtype or c.dtype in args.dtype]
    grid.sort(key=lambda c: min(c.seq_q, args.rows) * c.seq_kv)  # the cheapest first
    results = _done(args.details, grid) if args.resume else []
    grid = [c for c in grid if c.id not in {r["case"] for r in results}]
    for i, case in enumerate(grid):
        results.append(evaluate(case, args.seed, args.rows))
        if args.details:
            with args.details.open("a") as f:
                f.write(json.dumps(results[-1]) + "\n")
        if i % 20 == 0 or i == len(grid) - 1:
            print(f"[{i + 1}/{len(grid)}] {time.perf_counter() - t0:.0f} s {case.id}",
                  file=sys.stderr)
    summary = summarise(results, time.perf_counter() - t0)
    text = json.dumps(summary, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(markdown(summary) if args.markdown else text)
    return 0 if summary["false_alarms"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
