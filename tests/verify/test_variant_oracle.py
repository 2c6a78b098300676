"""The float64 oracle (verify/reference.py) against a literal float64 formula, per variant.

The formula is written here from the README's rule alone, one (batch, head, query row) at a
time with Python loops and math.exp; it shares no code with attnbench.variants, so a slip in
either shows. Every variant is covered, alone and combined, with grouped heads and lengths.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.run.execute import CaseData
from attnbench.verify.inputs import reference_arrays
from attnbench.verify.reference import oracle


def slopes(n: int) -> list[float]:
    """ALiBi slopes: 2^(-8(h+1)/n) for n a power of two; otherwise the nearest lower power of
    two's slopes, then the odd-numbered ones (1st, 3rd, ...) of twice that power."""
    p = 2 ** int(math.log2(n))
    base = [2.0 ** (-8.0 * (h + 1) / p) for h in range(p)]
    extra = [2.0 ** (-8.0 * (h + 1) / (2 * p)) for h in range(0, 2 * p, 2)]
    return (base + extra)[:n]


def named_function(ref: str):
    """The mask function a reference names, found here without attnbench.mask_mod."""
    import ast
    import importlib

    module, _, rest = ref.partition(":")
    name, _, args = rest.partition("(")
    fn = getattr(importlib.import_module(module), name)
    return fn(*ast.literal_eval(f"({args[:-1]},)")) if args else fn


def sees(case: Case, b: int, i: int, j: int) -> bool:
    """The README's visibility rule for query row i and key j of batch element b (a mask
    function called on plain integers, one pair at a time)."""
    if case.mask_mod is not None and not bool(named_function(case.mask_mod)(b, 0, i, j)):
        return False
    lq = case.q_lens[b] if case.q_lens is not None else case.seq_q
    lk = case.kv_lens[b] if case.kv_lens is not None else case.seq_kv
    off = 0 if case.mask == "causal_top_left" else lk - lq
    if not (i < lq and j < lk):
        return False
    if case.mask in ("causal", "causal_top_left") and j > i + off:
        return False
    if case.window_left is not None and j < i + off - case.window_left:
        return False
    if case.window_right is not None and j > i + off + case.window_right:
        return False
    if case.doc_lens is not None:
        starts = [sum(case.doc_lens[:n]) for n in range(len(case.doc_lens) + 1)]
        doc = [n for n in range(len(case.doc_lens)) if starts[n] <= i < starts[n + 1]][0]
        if not starts[doc] <= j < starts[doc + 1]:
            return False
    return True


def literal(arrays: dict[str, np.ndarray], case: Case) -> np.ndarray:
    """softmax_j(cap(q·k·scale) − slope·|i + off − j| + bias) · v, row by row; empty rows 0."""
    q, k, v, bias = arrays["q"], arrays["k"], arrays["v"], arrays.get("bias")
    out = np.zeros((case.batch, case.heads_q, case.seq_q, case.dv))
    group = case.heads_q // case.heads_kv
    for b in range(case.batch):
        lq = case.q_lens[b] if case.q_lens is not None else case.seq_q
        lk = case.kv_lens[b] if case.kv_lens is not None else case.seq_kv
        for h in range(case.heads_q):
            g = h // group
            for i in range(case.seq_q):
                score = {}
                for j in range(case.seq_kv):
                    if not sees(case, b, i, j):
                        continue
                    s = case.softmax_scale * sum(float(q[b, h, i, x] * k[b, g, j, x])
                                                 for x in range(case.head_dim))
                    if case.softcap is not None:
                        s = case.softcap * math.tanh(s / case.softcap)
                    if case.alibi:
                        off = 0 if case.mask == "causal_top_left" else lk - lq
                        s -= slopes(case.heads_q)[h] * abs(i + off - j)
                    if bias is not None:
                        s += bias[b if bias.shape[0] > 1 else 0, h if bias.shape[1] > 1 else 0,
                                  i, j]
                    score[j] = s
                if not score:
                    continue
                sink = [float(arrays["sinks"][h])] if "sinks" in arrays else []
                top = max([*score.values(), *sink])
                w = {j: math.exp(s - top) for j, s in score.items()}
                total = sum(w.values()) + sum(math.exp(x - top) for x in sink)
                for x in range(case.dv):
                    out[b, h, i, x] = sum(w[j] * v[b, g, j, x] for j in w) / total
    return out


CASES = [
    Case(2, 4, 2, 7, 11, 4, mask="causal", window_left=2),
    Case(1, 2, 2, 9, 6, 4, window_left=1, window_right=3),
    Case(3, 2, 1, 6, 9, 4, mask="causal", q_lens=(6, 0, 2), kv_lens=(9, 3, 0)),
    Case(3, 2, 2, 6, 9, 4, q_lens=(4, 6, 1), kv_lens=(9, 2, 5), layout="packed"),
    Case(2, 4, 2, 3, 10, 4, mask="causal", kv_lens=(10, 4), layout="paged", page_size=4),
    Case(1, 2, 2, 10, 10, 4, doc_lens=(3, 6, 1)),
    Case(1, 2, 1, 10, 10, 4, mask="causal", doc_lens=(4, 4, 2), window_left=1),
    Case(2, 3, 3, 5, 8, 4, mask="causal", alibi=True),  # 3 heads: the interleaved slopes
    Case(2, 6, 2, 1, 9, 4, mask="causal", alibi=True, kv_lens=(9, 4)),
    Case(2, 4, 2, 5, 7, 4, bias="shared"),
    Case(2, 4, 2, 5, 7, 4, bias="head", mask="causal"),
    Case(2, 4, 2, 5, 7, 4, bias="batch_head", kv_lens=(7, 2)),
    Case(2, 2, 2, 6, 6, 4, softcap=0.7, mask="causal", window_left=3),
    Case(2, 4, 2, 5, 7, 6, head_dim_v=3, mask="causal", scale=0.9),
    Case(2, 4, 1, 6, 8, 4, head_dim_v=5, alibi=True, bias="head", softcap=1.5, window_left=2,
         kv_lens=(8, 5), mask="causal"),
    Case(2, 4, 2, 9, 5, 4, mask="causal_top_left"),  # top-left: row i sees keys 0..i
    Case(2, 4, 2, 6, 9, 4, mask="causal", sinks=True, kv_lens=(9, 2)),  # a sink per q head
    Case(2, 2, 1, 5, 8, 4, sinks=True, window_left=1, softcap=1.5, alibi=True),
    Case(2, 4, 2, 4, 9, 4, mask="causal_top_left", window_left=1, alibi=True,
         kv_lens=(9, 6), q_lens=(4, 3)),
    # mask functions: prefix-LM, dilated under causal with ALiBi and lengths, block-sparse with
    # a softcap and a bias (rows that see no key), one that differs per batch element
    Case(2, 4, 2, 7, 9, 4, mask_mod="attnbench.mask_functions:prefix_lm(3)"),
    Case(2, 2, 1, 8, 8, 4, mask="causal", mask_mod="attnbench.mask_functions:dilated(2)",
         kv_lens=(8, 5), alibi=True),
    Case(2, 4, 2, 9, 6, 4, mask_mod="attnbench.mask_functions:random_blocks(2, 40)",
         softcap=1.5, bias="head"),
    Case(2, 2, 2, 6, 6, 4, mask_mod="attnbench.mask_functions:sequence_parity", sinks=True,
         window_left=2),
    # quantized k and v: the literal formula reads the dequantized values the inputs hold
    Case(2, 4, 2, 5, 9, 4, mask="causal", kv_quant="float8_e4m3fn", kv_scale="block",
         kv_lens=(9, 4)),
    Case(1, 2, 1, 6, 6, 4, kv_quant="int8", kv_scale="head", alibi=True),
]


# a mask function is evaluated in a child process (attnbench/mask_eval.py)
CASES = [pytest.param(c, marks=pytest.mark.process) if c.mask_mod else c for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_oracle_matches_the_literal_formula(case: Case):
    arrays = reference_arrays(case, 3)
    rows = np.arange(case.seq_q)
    np.testing.assert_allclose(oracle(arrays, case, rows), literal(arrays, case),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("case", CASES[:4], ids=lambda c: c.id)
def test_sampled_rows_are_the_same_rows_of_the_whole(case: Case):
    """The rows the checks compare (CaseData.ref) are those rows of the literal output."""
    data = CaseData(case, 0, check_seed=5)
    np.testing.assert_allclose(data.ref, literal(data.arrays, case)[:, :, data.rows],
                               atol=1e-12, rtol=0)


def test_top_left_causal_is_the_lower_triangle_from_the_first_key():
    for lq, lk in ((9, 5), (4, 9), (6, 6)):
        case = Case(1, 1, 1, lq, lk, 4, mask="causal_top_left")
        seen = np.array([[sees(case, 0, i, j) for j in range(lk)] for i in range(lq)])
        assert np.array_equal(seen, np.tril(np.ones((lq, lk), dtype=bool)))
        bottom = Case(1, 1, 1, lq, lk, 4, mask="causal")
        from attnbench.variants import visibility

        assert np.array_equal(visibility(case, 0), seen)
        assert np.array_equal(visibility(bottom, 0), np.tril(np.ones((lq, lk), bool), lk - lq))


def test_the_slopes_here_are_the_geometric_ones():
    assert slopes(8) == [2.0 ** -(h + 1) for h in range(8)]
    assert slopes(3) == [2.0 ** -4, 2.0 ** -8, 2.0 ** -2]  # 2 of 2 heads, then 1 of 4
