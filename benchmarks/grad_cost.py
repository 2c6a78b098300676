"""What checking gradients costs: rows compared, oracle FLOPs and seconds, per case.

    nice -n 10 .venv/bin/python benchmarks/grad_cost.py [--big]

For each case: the plan (every row within GRAD_FLOP_BUDGET, else drawn rows), the oracle's
planned FLOPs, the wall time of the float64 oracle with its floor (grad_oracle.plan_grads) and
of the plain-autograd baseline (grad_baseline.baseline_grads), and the peak resident memory
they added. --big adds the CUDA size of scenarios/backward.toml with batch 1 (one group of it
costs the same as at batch 4; dq's rows cost a quarter).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from attnbench.case import Case
from attnbench.verify import grad
from attnbench.verify.grad_baseline import baseline_grads
from attnbench.verify.grad_oracle import plan_grads
from attnbench.verify.grad_plan import full_cost, grad_plan, pair_flops
from attnbench.verify.inputs import reference_arrays

CASES = [Case(1, 8, 8, 1024, 1024, 64, mask="causal", mode="bwd"),
         Case(1, 8, 2, 2100, 2100, 64, mask="causal", mode="bwd"),
         Case(2, 16, 16, 2048, 2048, 64, mask="causal", mode="bwd")]
BIG = [Case(1, 16, 16, 8192, 8192, 128, dtype="bfloat16", mask="causal", mode="bwd")]


def planned_flops(case: Case, plan: grad.GradPlan) -> int:
    """The oracle's matmul FLOPs for a plan (grad_plan's cost model)."""
    if plan.full:
        return full_cost(case)
    f, g = pair_flops(case), case.heads_q // case.heads_kv
    dq = case.batch * case.heads_q * len(plan.q_rows) * case.seq_kv * f["dq"]
    kv = len(plan.groups) * g * case.seq_q * (case.seq_kv * f["fwd"] + len(plan.k_rows)
                                              * f["cols"])
    return dq + kv


def measure(case: Case) -> dict[str, object]:
    arrays = reference_arrays(case, 0)
    d_out = grad.upstream_grad(case, 0)
    plan = grad_plan(case, 12345)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    plan_grads(arrays, d_out, case, plan)
    t1 = time.perf_counter()
    baseline_grads(arrays, d_out, case, plan)
    t2 = time.perf_counter()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"case": case.id, "compared": grad.coverage(case, plan),
            "oracle_gflop": round(planned_flops(case, plan) / 1e9, 1),
            "oracle_s": round(t1 - t0, 1), "baseline_s": round(t2 - t1, 1),
            "peak_added_mib": round((rss1 - rss0) / 1024)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", action="store_true", help="add the CUDA size (b1 h16 8192² d128)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for case in CASES + (BIG if args.big else []):
        print(measure(case), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
