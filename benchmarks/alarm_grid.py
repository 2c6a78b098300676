"""The cases of benchmarks/false_alarms.py: GPU-sized heads, decode, cross lengths, variants."""

from __future__ import annotations

import itertools
import math

import numpy as np

from attnbench.case import Case
from attnbench.verify.inputs import case_seed

DTYPES = ["bfloat16", "float16", "float32"]
SHAPES = [(1, 1), (1, 64), (1, 4096), (1, 16384), (64, 64), (1000, 1000), (4096, 4096),
          (16384, 16384), (64, 2048), (2048, 512)]
QUICK_SHAPES = [(1, 4096), (64, 64), (1000, 1000), (4096, 4096)]
HEAD_DIMS = [64, 128, 256]
SCALE_FACTORS = [0.5, 1.0, 4.0]  # × 1/sqrt(d)
BANDS = [(64, "L <= 64"), (1024, "L <= 1k"), (4096, "L <= 4k"), (1 << 62, "L <= 16k")]


def plain(quick: bool) -> list[Case]:
    out = []
    shapes = QUICK_SHAPES if quick else SHAPES
    dims = [64, 128] if quick else HEAD_DIMS
    factors = [1.0] if quick else SCALE_FACTORS
    for n, ((sq, sk), d, f, mask) in enumerate(itertools.product(shapes, dims, factors,
                                                                 ["none", "causal"])):
        if mask == "causal" and sq > sk:
            continue  # rows that see nothing: covered by the variants
        heads = (4, 1) if n % 3 == 0 else (2, 2)  # a third with grouped heads
        for dt in DTYPES + (["float64"] if d == 128 and f == 1.0 else []):
            out.append(Case(1, heads[0], heads[1], sq, sk, d, dtype=dt, mask=mask,
                            scale=f / math.sqrt(d)))
    return out


def variant_specs(quick: bool) -> list[dict]:
    n = 256 if quick else 1024
    specs = [
        dict(seq_q=n, seq_kv=n, mask="causal", window_left=0),
        dict(seq_q=n, seq_kv=n, mask="causal", window_left=5),
        dict(seq_q=n, seq_kv=n, window_left=64, window_right=32),
        dict(seq_q=128, seq_kv=n, mask="causal", window_left=256),
        dict(batch=2, seq_q=n, seq_kv=n, kv_lens=(n, 0), mask="causal"),
        dict(batch=2, seq_q=n, seq_kv=n, q_lens=(n // 7, n), kv_lens=(n - 100, n // 8)),
        dict(batch=2, seq_q=1, seq_kv=2 * n, kv_lens=(2 * n, n // 2 + 13)),
        dict(batch=3, seq_q=n // 2, seq_kv=n // 2, q_lens=(n // 2, 3, n // 4),
             kv_lens=(n // 2, 3, n // 4), layout="packed", mask="causal"),
        dict(batch=3, seq_q=n // 2, seq_kv=n // 2, q_lens=(5, 0, n // 4),
             kv_lens=(n // 2, 6, n // 4), layout="packed"),
        dict(heads_q=6, heads_kv=6, seq_q=n, seq_kv=n, alibi=True, mask="causal"),
        dict(heads_q=8, heads_kv=2, seq_q=n, seq_kv=n, alibi=True, window_left=128,
             mask="causal"),
        dict(heads_q=6, heads_kv=3, seq_q=64, seq_kv=2 * n, alibi=True),
        dict(heads_q=5, heads_kv=5, seq_q=2 * n, seq_kv=64, alibi=True),
        dict(heads_q=3, heads_kv=1, seq_q=128, seq_kv=2 * n, alibi=True, mask="causal"),
        dict(batch=2, heads_q=4, heads_kv=4, seq_q=1, seq_kv=2 * n, kv_lens=(2 * n, n + 101),
             alibi=True),
        dict(batch=2, seq_q=n, seq_kv=n, bias="batch_head"),
        dict(seq_q=n, seq_kv=n, bias="shared", mask="causal"),
        dict(seq_q=n, seq_kv=n, softcap=5.0, window_left=128, mask="causal"),
        dict(seq_q=n, seq_kv=n, softcap=50.0, alibi=True, mask="causal"),
        dict(heads_q=6, heads_kv=2, seq_q=n, seq_kv=n, softcap=30.0, bias="head"),
        dict(seq_q=n, seq_kv=n, head_dim=192, head_dim_v=128, mask="causal"),
        dict(seq_q=n, seq_kv=n, doc_lens=_docs(n), mask="causal"),
    ]
    return specs


def _docs(n: int) -> tuple[int, ...]:
    from attnbench.variants import random_documents

    return random_documents(4, n)


def variant_cases(quick: bool) -> list[Case]:
    out = []
    for spec in variant_specs(quick):
        for dt in DTYPES:
            s = {"batch": 1, "heads_q": 2, "heads_kv": 2, "head_dim": 64, **spec}
            out.append(Case(dtype=dt, **s))
    return out


def small_heads(quick: bool) -> list[Case]:
    """Peer suites' small shapes: d 16 and 32, a scale of 9/√d among them."""
    out = []
    shapes = [(13, 16), (24, 24)] if quick else [(13, 16), (16, 13), (24, 24), (1, 40)]
    for (sq, sk), d, f, mask in itertools.product(shapes, [16, 32], [1.0, 9.0],
                                                  ["none", "causal"]):
        for dt in DTYPES + ["float64"]:
            out.append(Case(2, 5, 5, sq, sk, d, dtype=dt, mask=mask, scale=f / math.sqrt(d)))
    return out


def extremes() -> list[Case]:
    """Scores far from the usual scale: near one-hot rows (a scale of 1e6 in float32, 16/√d in
    the half types), scores near float16's range."""
    out = [Case(1, 2, 2, 256, 256, 64, dtype="float32", mask=m, scale=1e6)
           for m in ("none", "causal")]
    for dt in ("bfloat16", "float16"):
        out.append(Case(1, 2, 2, 1000, 1000, 64, dtype=dt, scale=16 / 8))
        out.append(Case(1, 2, 2, 1, 4096, 128, dtype=dt, scale=16 / math.sqrt(128)))
    out.append(Case(1, 2, 2, 64, 512, 64, dtype="float16", scale=100.0))
    return out


def cases(quick: bool) -> list[Case]:
    return _check(plain(quick) + small_heads(quick) + variant_cases(quick) + extremes())


def sample_rows(case: Case, cap: int, seed: int) -> np.ndarray:
    """Every row up to cap, else the first, the last and rows drawn from the case's seed."""
    n = case.seq_q
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(case_seed(case, seed) + 1)
    picks = rng.choice(np.arange(1, n - 1), size=cap - 2, replace=False)
    return np.unique(np.concatenate([[0, n - 1], picks]))


def band(case: Case) -> str:
    return next(name for top, name in BANDS if case.seq_kv <= top)


def label(case: Case) -> str:
    """plain, decode or cross, or the variants a case uses."""
    if case.variants:
        return "+".join(case.variants)
    if case.seq_q == 1:
        return "decode"
    return "cross" if case.seq_q != case.seq_kv else "plain"


def _check(grid: list[Case]) -> list[Case]:
    """Every case valid as a scenario would make it (lengths within the sequences...)."""
    from attnbench.case_checks import variant_problem

    bad = [(c.id, p) for c in grid if (p := variant_problem(c))]
    if bad:
        raise ValueError(f"invalid study cases: {bad[:3]}")
    return grid
