"""A GPU run's output errors, judged again on the CPU by today's rounding model.

    .venv/bin/python benchmarks/gpu_recheck.py RUN_DIR [--emulate] [--json FILE]

A record keeps the output's max abs and relative L2 errors against the float64 oracle on the
compared rows, the check seed those rows came from and the run's seed, not the output itself.
For each forward record this rebuilds the inputs (inputs.reference_arrays with the run's seed)
and the compared rows (reference.check_rows with the record's check_seed), checks them against
what the record stored (the row count, the largest |v| the old floor saw), computes the rounding
model there and reports, per record:

- `elem_lo`: max_abs_err over the largest element bound: above 1, no element can hold that
  error, a certain false alarm; `elem_hi`: over the smallest bound of an element whose oracle
  value is at least the error (an element no smaller than its error); `below`: the share of
  elements whose bound is below max_abs_err (where the error could fail);
- `l2`: the record's L2 error over the model's L2 bound summed over heads (sqrt Σ_h bound_h²):
  above 1, at least one head fails the per-head L2 check;
- with --emulate, the record's backend emulated on the CPU on the same rows and judged in full
  (benchmarks/alarm_impls.py: torch-naive as `naive`, SDPA's math kernel as `prescaled`, the
  fused kernels as FlashAttention-2's loop in blocks of 128), its max abs error beside the GPU's
  and `at_emu`: the GPU's max abs error over the bound of the element where the emulation errs
  most (where the two max errors are equal, likely the same element).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.verify import bound
from attnbench.verify.inputs import reference_arrays
from attnbench.verify.reference import check_rows
from attnbench.verify.rounding import Model, oracle_and_model

FIELDS = [f for f in Case.__dataclass_fields__]
EMULATED = {"torch-naive": "naive", "torch-sdpa-math": "prescaled"}  # else "online-b128"


def case_of(rec: dict[str, Any]) -> Case:
    """The record's case, checked against its id."""
    case = Case(**{f: rec[f] for f in FIELDS})
    if case.id != rec["case_id"]:
        raise ValueError(f"rebuilt {case.id}, record says {rec['case_id']}")
    return case


def model_facts(model: Model, rows_ref: np.ndarray) -> dict[str, Any]:
    """The element bounds, the per-head L2 bounds and the oracle's norm on the compared rows."""
    bounds = bound.element_bounds(model)
    seen = np.broadcast_to(~model.empty, bounds.shape)
    l2_heads = bound.FACTOR_L2 * bound.head_stats(np.zeros_like(model.ref), model)["l2_model"]
    return {"bounds": bounds[seen], "abs_ref": np.abs(rows_ref)[seen],
            "l2_all": float(np.sqrt((l2_heads ** 2).sum())),
            "ref_norm": float(np.linalg.norm(model.ref))}


def ratios(out: dict[str, Any], facts: dict[str, Any]) -> dict[str, float]:
    """The record's errors against the model's bounds (see the module's docstring)."""
    e, b = out["max_abs_err"], facts["bounds"]
    large = b[facts["abs_ref"] >= e]
    return {"elem_lo": e / float(b.max()), "elem_hi": e / float(large.min()) if large.size
            else float("inf"), "below": float((b < e).mean()),
            "l2": out["rel_l2_err"] * facts["ref_norm"] / facts["l2_all"],
            "old": out.get("error_over_bound")}


def emulate(arrays: dict[str, np.ndarray], case: Case, rows: np.ndarray, model: Model,
            name: str) -> dict[str, Any]:
    """The CPU emulation `name` (alarm_impls.CORRECT) in the case dtype, judged in full."""
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from alarm_impls import CORRECT, Rows

    impl, dt = CORRECT[name], getattr(torch, case.dtype)
    q = torch.from_numpy(arrays["q"][:, :, rows]).to(dt)
    k, v = (torch.from_numpy(arrays[n]).to(dt) for n in ("k", "v"))
    got = impl(q, k, v, Rows(case, 0, rows)).to(torch.float64).numpy()
    entry = bound.judge(got, 0, model, rows=rows)
    return {"emulation": name, "emu_max_abs_err": float(np.abs(got - model.ref).max()),
            "emu_ratio": entry["error_over_bound"], "emu_checks": entry["checks"],
            "emu_bound_at_max": entry["bound"]}


def recheck(run: Path, emulated: bool) -> list[dict[str, Any]]:
    seed = json.loads((run / "run.json").read_text())["config"]["seed"]
    recs = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    out, done = [], {}
    for rec in recs:
        agree = rec.get("agreement") or {}
        if rec.get("mode") != "fwd" or not agree.get("outputs"):
            continue
        case = case_of(rec)
        key = (rec["case_id"], agree["check_seed"])
        if key not in done:
            done[key] = _case_facts(case, seed, agree)
        facts, o = done[key], agree["outputs"][0]
        emu = EMULATED.get(rec["backend"], "online-b128")
        if emulated and emu not in facts["emulated"]:
            facts["emulated"][emu] = emulate(*facts["inputs"], emu)
        out.append({"backend": rec["backend"], "case": rec["case_id"],
                    "kernel": (rec.get("ran") or {}).get("kernel"),
                    "max_abs_err": o["max_abs_err"], "rel_l2_err": o["rel_l2_err"],
                    "v_max_matches": facts["v_max"] == o["magnitudes"]["V_max"],
                    **ratios(o, facts), **facts["emulated"].get(emu, {})})
        if "emu_bound_at_max" in out[-1]:
            out[-1]["at_emu"] = o["max_abs_err"] / out[-1]["emu_bound_at_max"]
        print(json.dumps(out[-1]), file=sys.stderr)
    return out


def _case_facts(case: Case, seed: int, agree: dict[str, Any]) -> dict[str, Any]:
    arrays = reference_arrays(case, seed)
    rows = check_rows(case, agree["check_seed"])
    stored = agree["rows_checked"]
    if (stored == "all") != (len(rows) == case.seq_q) or (
            stored != "all" and stored != len(rows)):
        raise ValueError(f"{case.id}: {len(rows)} rows rebuilt, the record compared {stored}")
    model = oracle_and_model(arrays, case, rows)
    facts = model_facts(model, model.ref)
    facts["v_max"] = float(np.abs(arrays["v"]).max())
    facts["inputs"], facts["emulated"] = (arrays, case, rows, model), {}
    return facts


def table(rows: list[dict[str, Any]]) -> str:
    """Per backend: the worst of each ratio over its records."""
    keys = ["old", "elem_lo", "elem_hi", "below", "l2"] + (["emu_ratio", "at_emu"]
                                                           if "at_emu" in rows[0] else [])
    lines = ["| backend | records | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for name in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == name]
        worst = {k: max(r[k] for r in mine) for k in keys}
        lines.append(f"| {name} | {len(mine)} | " + " | ".join(f"{worst[k]:.3g}" for k in keys)
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--emulate", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = recheck(args.run, args.emulate)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))
    return 0 if all(r["elem_lo"] <= 1 and r["l2"] <= 1 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
