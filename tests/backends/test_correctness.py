"""Every registered backend on every `smoke` case against the float64 oracle (real pass rule)."""

from __future__ import annotations

import os
from functools import cache

import pytest

from attnbench.case import Case
from attnbench.plugin.backend import device_failure
from attnbench.plugin.registry import build_registry
from attnbench.run.execute import CaseData, Options, execute
from attnbench.scenario import resolve_scenario

REGISTRY = build_registry(autoload=False)
DEVICES = ["cpu"] + (["cuda"] if device_failure("cuda") is None else [])
SMOKE = resolve_scenario("smoke")
CASES = [case for device in DEVICES for case in SMOKE.cases(device)]
# flex-attention compiles a C++ kernel per graph on the CPU (~10 s each cold, ~20 graphs in
# smoke): the suite checks it on one case of each kind; ATTNBENCH_FULL_SMOKE=1 checks them all
# (CI's `attnbench check -s smoke` gate also runs every case).
COMPILED = {"flex-attention"}
FULL = os.environ.get("ATTNBENCH_FULL_SMOKE") == "1"


def representative(case: Case) -> bool:
    """One case per kind: self, causal with Lq > Lk, decode, grouped heads (bf16)."""
    return case.device != "cpu" or case in {
        Case(2, 2, 2, 17, 17, 16, "float32", "cpu", "none"),
        Case(2, 2, 2, 31, 9, 16, "float32", "cpu", "causal"),
        Case(2, 2, 2, 1, 40, 16, "float32", "cpu", "causal"),
        Case(2, 8, 1, 24, 24, 16, "bfloat16", "cpu", "causal"),
    }


@cache
def case_data(case: Case) -> CaseData:
    """One case's inputs and oracle, shared by every backend (as the runner does)."""
    return CaseData(case, seed=0)


def test_smoke_covers_every_kind():
    kinds = {
        "causal": any(c.mask == "causal" for c in CASES),
        "fewer queries": any(c.seq_q < c.seq_kv for c in CASES),
        "more queries": any(c.seq_q > c.seq_kv for c in CASES),
        "decode": any(c.seq_q == 1 for c in CASES),
        "grouped": any(c.heads_q != c.heads_kv for c in CASES),
        "scale": any(c.scale is not None for c in CASES),
        "bfloat16": any(c.dtype == "bfloat16" for c in CASES),
    }
    assert all(kinds.values()), kinds


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("name", sorted(REGISTRY.backends))
def test_backend_agrees_with_oracle(name: str, case: Case):
    backend = REGISTRY.backends[name]
    if name in COMPILED and not FULL and not representative(case):
        pytest.skip(f"{name} compiles per graph: checked on representative cases only")
    reasons = backend.unsupported(case)
    if reasons:
        pytest.skip("; ".join(reasons))
    opts = Options(time_it=False, memory=False)  # agreement only, as `check` does
    rec = execute(backend, "smoke", case, lambda: case_data(case), opts)
    if rec["status"] == "unsupported":
        pytest.skip("; ".join(rec["reasons"]))
    assert rec["status"] == "ok", (rec.get("error"), rec.get("agreement"))
    out = rec["agreement"]["outputs"][0]
    assert out["nonfinite"] == 0
    assert out["max_abs_err"] <= out["bound"]
    assert out["shape"] == [case.batch, case.heads_q, case.seq_q, case.head_dim]


def test_representative_cases_are_in_smoke():
    """The reduced set for compiled backends must be real smoke cases (else nothing runs)."""
    assert sum(representative(c) for c in CASES if c.device == "cpu") == 4
