"""How tight the lse bound is: correct kernels' error over it, and planted bugs' (docs/variants.md).

    .venv/bin/python benchmarks/lse_bound.py [BACKEND ...]

Every lse case of scenarios/variants.toml (CPU sizes) plus larger ones (head dims 64 and 128,
a thousand keys, ALiBi, a bias, a softcap, sinks), in float64, float32, float16 and bfloat16, on
numpy-naive, torch-naive and numpy-flash (the names given, else these): the largest lse
error/bound per backend and dtype, which a correct kernel keeps well under 1. Then the same
cases with numpy-naive's lse (torch-naive's in bfloat16) in base 2 (lse / ln 2) and without
the softmax scale: their smallest error/bound, which must be far above 1.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

import numpy as np

from attnbench.case import Case
from attnbench.plugin.registry import build_registry
from attnbench.scenario import resolve_scenario
from attnbench.testing import check_output

DTYPES = ("float64", "float32", "float16", "bfloat16")
LARGER = [
    Case(1, 4, 2, 256, 1024, 64, mask="causal", lse=True),
    Case(1, 4, 1, 64, 1000, 128, kv_lens=(700,), alibi=True, softcap=30.0, lse=True),
    Case(2, 2, 2, 128, 512, 64, bias="batch_head", mask="causal", lse=True),
    Case(1, 8, 2, 1, 4096, 128, mask="causal", sinks=True, lse=True),
    Case(1, 2, 2, 128, 128, 64, inputs="peaked", mask="causal", lse=True),
    Case(1, 2, 2, 128, 128, 64, inputs="outliers", lse=True),
]


def cases() -> list[Case]:
    lse = [c for c in resolve_scenario("variants").cases("cpu") if c.lse]
    base = {dataclasses.replace(c, dtype="float32") for c in lse + LARGER}
    return sorted({dataclasses.replace(c, dtype=d) for c in base for d in DTYPES},
                  key=lambda c: c.id)


def ratio(agreement: dict[str, Any]) -> float:
    entry = next(o for o in agreement["outputs"] if o["name"] == "lse")
    return math.inf if "error" in entry else float(entry["error_over_bound"])


def run(backend: Any, case: Case, wrong: str | None = None) -> float:
    def attention(inputs: Any) -> Any:
        out, lse = backend.prepare(inputs)()
        if wrong == "base 2":
            return out, lse / math.log(2)  # stays in the lse's dtype (NumPy 2, torch)
        if wrong == "no scale":
            return out, backend.prepare(dataclasses.replace(inputs, scale=1.0))()[1]
        return out, lse
    return ratio(check_output(attention, case, backend.framework))


def main(names: list[str]) -> None:
    registry = build_registry(autoload=False)
    names = names or ["numpy-naive", "torch-naive", "numpy-flash"]
    todo = cases()
    print(f"{len(todo)} cases")
    for name in names:
        backend = registry.backends[name]
        for dtype in DTYPES:
            got = [run(backend, c) for c in todo if c.dtype == dtype and not backend.unsupported(c)]
            if got:
                print(f"{name:12} {dtype:9} {len(got):3} cases  error/bound max "
                      f"{max(got):.3f}  median {float(np.median(got)):.3f}")
    for wrong in ("base 2", "no scale"):
        for dtype in DTYPES:  # numpy-naive made wrong, torch-naive in bfloat16
            naive = registry.backends["torch-naive" if dtype == "bfloat16" else "numpy-naive"]
            got = [run(naive, c, wrong) for c in todo if c.dtype == dtype
                   and not naive.unsupported(c)]
            print(f"lse {wrong:8} {dtype:9} {len(got):3} cases  error/bound min {min(got):.3g}"
                  f" ({naive.name})")


if __name__ == "__main__":
    main(sys.argv[1:])
