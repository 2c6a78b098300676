"""Cases shared by the tests of the tiled CPU backends (numba-cpu, numpy-flash): odd sizes, empty
rows, grouped heads, cross attention and every variant they declare, checked by the real pass
rule against the float64 oracle (attnbench.run.execute, as `attnbench check` does)."""

from __future__ import annotations

from attnbench.case import Case
from attnbench.plugin.backend import Backend
from attnbench.run.execute import CaseData, Options, execute

PLAIN = [
    Case(2, 2, 2, 17, 17, 16),
    Case(1, 2, 2, 257, 1100, 32, mask="causal"),  # several query and key tiles, partial ones
    Case(2, 4, 2, 31, 9, 16, mask="causal"),  # Lq > Lk: the first rows see no key
    Case(2, 8, 2, 1, 700, 16, mask="causal"),  # decode, grouped heads
    Case(1, 6, 3, 130, 130, 8, mask="causal", scale=0.3),
]
VARIANT = [
    Case(2, 4, 2, 37, 53, 16, mask="causal", window_left=5),
    Case(1, 2, 2, 300, 700, 16, window_left=200, window_right=150),
    Case(3, 2, 1, 33, 47, 16, mask="causal", q_lens=(33, 0, 10), kv_lens=(47, 5, 0)),
    Case(2, 2, 2, 1, 600, 16, mask="causal", kv_lens=(600, 37)),  # decode on cache lengths
    Case(1, 2, 2, 150, 150, 16, mask="causal", doc_lens=(7, 130, 13)),
    Case(1, 2, 2, 90, 90, 16, doc_lens=(40, 50), window_left=10),
    Case(2, 4, 2, 30, 45, 16, mask="causal", alibi=True),
    Case(1, 3, 3, 40, 40, 16, softcap=1.5),
    Case(1, 2, 1, 20, 33, 16, head_dim_v=24),
    Case(2, 4, 1, 70, 90, 16, mask="causal", window_left=20, alibi=True, softcap=5.0,
         kv_lens=(90, 60), head_dim_v=8),
]


def with_dtype(cases: list[Case], dtype: str) -> list[Case]:
    return [Case(**{**c.__dict__, "dtype": dtype}) for c in cases]


def check(backend: Backend, case: Case) -> dict:
    """One case on one backend: its record's agreement with the oracle (no timing)."""
    assert backend.unsupported(case) == [], backend.unsupported(case)
    rec = execute(backend, "test", case, lambda: CaseData(case, seed=0),
                  Options(time_it=False, memory=False))
    assert rec["status"] == "ok", (rec.get("error"), rec.get("agreement"))
    out = rec["agreement"]["outputs"][0]
    assert out["nonfinite"] == 0
    assert out["max_abs_err"] <= out["bound"], out
    return out
