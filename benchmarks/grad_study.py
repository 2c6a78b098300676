"""Gradient bound study: correct backward passes must all pass, planted bugs must be caught.

    nice -n 10 .venv/bin/python benchmarks/grad_study.py [--quick] [--out docs/grad_study.json]

Each case's dq, dk and dv are checked as `attnbench check` checks a backend (grad.grad_entries:
the float64 oracle on the plan's rows, K_GRAD × the plain-autograd baseline + the element floor).
Correct implementations (benchmarks/grad_impls.py, and the shipped torch backends through their
own prepare()) must pass: one that fails is a false alarm. Beside the verdict the study records,
per implementation, the factor the floor alone would need (max error / floor at factor 1): the
calibration of GRAD_FLOOR_FACTOR. Each planted bug is run in the case's dtype (caught or not) and
in float64: when its float64 effect stays within the floor at factor 1 on every compared element,
no rule can see it in that dtype ("below rounding"); when it changes only rows the plan does not
compare (a drawn sample beyond the oracle's budget), "not compared"; else a pass is a miss.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grad_impls import BUGS, CORRECT  # noqa: E402

from attnbench.case import Case  # noqa: E402
from attnbench.plugin.registry import build_registry  # noqa: E402
from attnbench.verify import grad  # noqa: E402
from attnbench.verify.grad_plan import grad_plan  # noqa: E402
from attnbench.verify.inputs import make_inputs, reference_arrays, to_framework  # noqa: E402

SHIPPED = ("torch-naive", "torch-sdpa", "torch-sdpa-math", "torch-sdpa-flash")
DTYPES = ("float32", "bfloat16", "float16", "float64")
STUDY_SEED = 20240601  # the rows drawn for cases beyond the oracle's budget


def xformers_shapes() -> list[Case]:
    """xformers' test_backward shapes (B, Mq, Mkv, H, K), inputs ×3: scale 9/√K, float32."""
    shapes = [(b, mq, mkv, 1, 32) for b in (1, 3) for mq in (32, 256) for mkv in (32, 64, 256)]
    for m in (2, 3, 15, 31, 34, 68, 72, 90, 132, 136):
        shapes += [(1, m, 128, 1, 32), (1, 256, m, 1, 32)]
    shapes += [(1, 256, 128, 1, k) for k in (1, 2, 3, 31, 34, 36, 40, 64, 128)]
    shapes += [(max(1, 3 // h), 256, 128, h, 32) for h in (3, 5, 12)]
    return [Case(b, h, h, mq, mkv, k, scale=9 / math.sqrt(k), mode="fwd_bwd")
            for b, mq, mkv, h, k in shapes]


def shapes(quick: bool) -> list[Case]:
    """The float32 shapes; every dtype runs them (less the xformers grid beyond float32)."""
    if quick:
        return [Case(1, 4, 2, 96, 80, 32, mask="causal", mode="fwd_bwd"),
                Case(1, 2, 2, 64, 64, 32, scale=9 / math.sqrt(32), mode="fwd_bwd"),
                Case(1, 2, 1, 40, 40, 16, softcap=5.0, window_left=7, mask="causal",
                     mode="fwd_bwd")]
    c = "causal"
    base = [Case(1, 8, 8, s, s, 64, mask=c, mode="fwd_bwd") for s in (256, 512, 1024)]
    base += [Case(1, 2, 2, s, s, d, mask=c, mode="fwd_bwd")
             for s in (1024, 2048) for d in (64, 128)]
    base += [Case(1, 8, 2, 2100, 2100, 64, mask=c, mode="fwd_bwd")]  # past the old skip limit
    base += [Case(2, 8, 2, 128, 128, 64, mode="fwd_bwd"),  # grouped heads
             Case(1, 6, 2, 200, 100, 32, mask=c, mode="fwd_bwd"),
             Case(1, 4, 1, 64, 300, 128, mask=c, mode="fwd_bwd"),
             Case(1, 4, 4, 100, 37, 64, mask=c, mode="fwd_bwd"),  # rows that see no key
             Case(1, 2, 2, 1, 513, 64, mode="fwd_bwd"),  # decode
             Case(1, 2, 2, 17, 1024, 64, mask=c, mode="fwd_bwd")]
    for d in (16, 64, 256):  # scales and head dims
        for f in (0.05, 1.0, 9.0):
            base.append(Case(1, 2, 2, 160, 224, d, scale=f / math.sqrt(d), mask=c,
                             mode="fwd_bwd"))
    base += [  # the padded-layout variants
        Case(2, 4, 2, 256, 256, 64, mask=c, window_left=32, mode="fwd_bwd"),
        Case(2, 4, 2, 200, 240, 64, mask=c, q_lens=(200, 77), kv_lens=(240, 90),
             mode="fwd_bwd"),
        Case(2, 8, 8, 160, 300, 64, mask=c, alibi=True, mode="fwd_bwd"),
        Case(1, 4, 2, 192, 192, 64, mask=c, softcap=30.0, mode="fwd_bwd"),
        Case(1, 4, 4, 128, 128, 64, softcap=2.0, alibi=True, mode="fwd_bwd"),
        Case(2, 4, 2, 150, 150, 64, head_dim_v=32, mask=c, mode="fwd_bwd"),
        Case(2, 4, 4, 128, 160, 32, bias="batch_head", mask=c, mode="fwd_bwd"),
        Case(1, 4, 2, 240, 240, 64, mask=c, doc_lens=(100, 60, 80), mode="fwd_bwd")]
    return base


def grid(quick: bool, dtypes: tuple[str, ...] = DTYPES) -> list[Case]:
    out = []
    for dtype in dtypes:
        xf = xformers_shapes() if dtype == "float32" else xformers_shapes()[::4]
        for case in ([] if quick else xf) + shapes(quick):
            out.append(Case(**{**case.to_dict(), "dtype": dtype}))
    return out


def floor_ratio(case: Case, ref: grad.GradRef, grads: dict[str, np.ndarray]) -> float:
    """max over the compared elements of error / floor at factor 1 (the factor it needs)."""
    worst = 0.0
    for n in grad.GRAD_NAMES:
        err = np.abs(grad.select_rows(grads[n], ref.plan, n) - ref.values[n])
        fl = ref.floors[n]
        r = np.where(fl > 0, err / np.where(fl > 0, fl, 1.0), np.where(err > 0, np.inf, 0.0))
        worst = max(worst, float(r.max(initial=0.0)))
    return worst


def outside(plan: grad.GradPlan, bug: dict[str, np.ndarray], right: dict[str, np.ndarray]
            ) -> bool:
    """The bug changes the gradients (in float64) only on rows the plan does not compare."""
    differs = any(not np.array_equal(bug[n], right[n]) for n in grad.GRAD_NAMES)
    return differs and all(np.array_equal(grad.select_rows(bug[n], plan, n),
                                          grad.select_rows(right[n], plan, n))
                           for n in grad.GRAD_NAMES)


def shipped_grads(name: str, case: Case, arrays: dict[str, np.ndarray], d_out: np.ndarray,
                  registry: Any) -> dict[str, Any] | None:
    backend = registry.get(name)
    if backend.unsupported(case):
        return None
    inputs = make_inputs(case, arrays, "torch")
    d_o = to_framework(d_out, "torch", case.dtype, case.device)
    run = grad.prepare_grad(lambda: backend.prepare(inputs), inputs, d_o, "fwd_bwd",
                            lambda: None)
    return run.grads


def study_case(case: Case, registry: Any) -> dict[str, Any]:
    """Every correct implementation's verdict and ratios, and every applicable bug's."""
    t0 = time.perf_counter()
    arrays = reference_arrays(case, 0)
    d_out = grad.upstream_grad(case, 0)
    plan = grad_plan(case, STUDY_SEED)
    ref = grad.grad_reference(case, arrays, d_out, plan)
    row: dict[str, Any] = {"case": case.id, "dtype": case.dtype, "full": plan.full,
                           "note": grad.coverage(case, plan), "correct": {}, "bugs": {}}
    impls = {**{n: (lambda f=f: f(case, arrays, d_out, case.dtype)) for n, f in CORRECT.items()},
             **{n: (lambda n=n: shipped_grads(n, case, arrays, d_out, registry))
                for n in SHIPPED}}
    for name, make in impls.items():
        got = make()
        if got is None:
            continue
        arrs, dtypes = grad.grad_arrays(got)
        entries = grad.grad_entries(case, ref, arrs, dtypes)
        row["correct"][name] = {
            "passed": all(e["passed"] for e in entries),
            "ratio": max(e.get("error_over_bound", math.inf) for e in entries),
            "floor_ratio": floor_ratio(case, ref, arrs)}  # type: ignore[arg-type]
    right, _ = grad.grad_arrays(CORRECT["autograd"](case, arrays, d_out, "float64"))
    for name, (applies, bug) in BUGS.items():
        if not applies(case):
            continue
        arrs, dtypes = grad.grad_arrays(bug(case, arrays, d_out, case.dtype))
        entries = grad.grad_entries(case, ref, arrs, dtypes)
        exact, _ = grad.grad_arrays(bug(case, arrays, d_out, "float64"))
        row["bugs"][name] = {"caught": not all(e["passed"] for e in entries),
                             "effect": floor_ratio(case, ref, exact),  # type: ignore[arg-type]
                             "outside": outside(ref.plan, exact, right)}  # type: ignore[arg-type]
    row["seconds"] = time.perf_counter() - t0
    return row


def summarise(rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """False alarms, the worst ratios per dtype and implementation, and the power table."""
    alarms = [(r["case"], n) for r in rows for n, c in r["correct"].items() if not c["passed"]]
    worst: dict[str, dict[str, list[float]]] = {}
    power: dict[str, dict[str, list[int]]] = {}
    for r in rows:
        for n, c in r["correct"].items():
            w = worst.setdefault(r["dtype"], {}).setdefault(n, [0.0, 0.0])
            w[0], w[1] = max(w[0], c["ratio"]), max(w[1], c["floor_ratio"])
        for n, bug in r["bugs"].items():
            p = power.setdefault(n, {}).setdefault(r["dtype"], [0, 0, 0, 0, 0])
            below = bug["effect"] <= 1.0
            p[0] += bug["caught"]
            p[1] += 1
            p[2] += below and not bug["caught"] and not bug["outside"]
            p[3] += not below and not bug["caught"]
            p[4] += bug["outside"] and not bug["caught"]
    pairs = sum(len(r["correct"]) for r in rows)
    return {"pairs": pairs, "false_alarms": len(alarms), "alarm_list": alarms,
            "cases": len(rows), "seconds": round(seconds, 1),
            "worst": {d: {n: {"error_over_bound": round(v[0], 3), "floor_factor_needed":
                              round(v[1], 3)} for n, v in w.items()} for d, w in worst.items()},
            "power": {n: {d: {"caught": v[0], "applies": v[1], "below_rounding": v[2],
                              "missed": v[3], "not_compared": v[4]} for d, v in p.items()}
                      for n, p in power.items()}}


def markdown(summary: dict[str, Any]) -> str:
    """The power table for docs/agreement.md."""
    lines = ["| bug | " + " | ".join(DTYPES) + " |", "|---|" + "---|" * len(DTYPES)]
    for n, per in summary["power"].items():
        cells = []
        for d in DTYPES:
            v = per.get(d)
            unseen = f", {v['not_compared']} not compared" if v and v["not_compared"] else ""
            cells.append("–" if v is None else f"{v['caught']}/{v['applies']} "
                         f"({v['below_rounding']} below, {v['missed']} missed{unseen})")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three small cases per dtype")
    ap.add_argument("--out", type=Path, default=None, help="write the rows and summary here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated (default all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    registry = build_registry([], autoload=False)
    t0, rows = time.perf_counter(), []
    for case in grid(args.quick, tuple(args.dtypes.split(","))):
        rows.append(study_case(case, registry))
        r = rows[-1]
        bad = [n for n, c in r["correct"].items() if not c["passed"]]
        ratio = max(c["ratio"] for c in r["correct"].values())
        need = max(c["floor_ratio"] for c in r["correct"].values())
        print(f"{r['seconds']:6.1f}s {r['case']}: worst {ratio:.3f} floor {need:.3f}"
              f"{' FALSE ALARM ' + ','.join(bad) if bad else ''}", flush=True)
    summary = summarise(rows, time.perf_counter() - t0)
    print(json.dumps({k: v for k, v in summary.items() if k != "power"}, indent=1))
    print(markdown(summary))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    return 0 if summary["false_alarms"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
