"""Work model: FLOPs from an exact count of the masked score matrix, mode factors, bytes."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.verify.inputs import flops, io_bytes, score_bytes, to_framework, visible_pairs
from attnbench.verify.reference import row_visibility

SHAPES = [(64, 64), (48, 80), (80, 48), (1, 57), (57, 1), (1, 1), (3, 1000), (1000, 3)]


@pytest.mark.parametrize("mask", ["none", "causal"])
@pytest.mark.parametrize("sq,sk", SHAPES)
def test_visible_pairs_equal_a_brute_force_count(mask, sq, sk):
    case = Case(1, 1, 1, sq, sk, 8, mask=mask)
    brute = int(row_visibility(case, np.arange(sq)).sum())
    assert visible_pairs(case) == brute
    # and against an explicit double loop over (query, key) with the bottom-right rule
    if sq * sk <= 5000:
        loop = sum(1 for i in range(sq) for j in range(sk) if mask == "none" or j <= i + sk - sq)
        assert brute == loop


def test_causal_formula_of_method_md_when_sq_le_sk():
    for sq, sk in [(64, 64), (48, 80), (1, 57)]:
        mean_visible = (max(0, sk - sq) + sk) / 2
        exact = visible_pairs(Case(1, 1, 1, sq, sk, 8, mask="causal")) / sq
        assert exact == pytest.approx(mean_visible + 0.5)  # the diagonal itself is visible


@pytest.mark.parametrize("mode,factor", [("fwd", 1.0), ("bwd", 2.5), ("fwd_bwd", 3.5)])
def test_flops_scale_with_batch_heads_dim_and_mode(mode, factor):
    case = Case(2, 6, 2, 48, 80, 32, mask="causal", mode=mode)
    vis = int(row_visibility(case, np.arange(48)).sum())
    assert flops(case) == 4 * 2 * 6 * vis * 32 * factor


def test_bytes_model():
    case = Case(2, 8, 2, 100, 300, 64, dtype="float16")
    assert io_bytes(case) == 2 * 2 * 64 * (2 * 8 * 100 + 2 * 2 * 300)
    # the backward reads q, k, v, out, d_out and writes dq, dk, dv: twice the forward's bytes
    assert io_bytes(Case(2, 8, 2, 100, 300, 64, dtype="float16", mode="bwd")) == 2 * io_bytes(case)
    assert io_bytes(Case(2, 8, 2, 100, 300, 64, dtype="float16", mode="fwd_bwd")) == (
        3 * io_bytes(case))
    assert score_bytes(case) == 2 * 2 * 2 * 8 * 100 * 300


def test_a_window_side_that_bounds_nothing_is_unbounded():
    """Window sides of seq_q + seq_kv or more hide no key: Inputs.window says -1, so kernels
    never add 2**31 - 1 to an int32 index (flex's mask on int32 indices once overflowed)."""
    from attnbench.case import Case
    from attnbench.verify.inputs import make_inputs, reference_arrays

    for left, right, want in [(2**31 - 1, 3, (-1, 3)), (13, 12, (-1, 12)), (12, None, (12, -1))]:
        case = Case(1, 1, 1, 5, 8, 4, window_left=left, window_right=right)
        assert make_inputs(case, reference_arrays(case, 0), "numpy").window == want


def test_a_numpy_backend_claiming_bfloat16_is_told_numpy_has_none():
    """NumPy has no bfloat16: the input copy names that and the fix, not NumPy's bare error."""
    with pytest.raises(TypeError, match="NumPy has no bfloat16 dtype.*capabilities' dtypes"):
        to_framework(np.zeros((1, 1, 2, 4)), "numpy", "bfloat16", "cpu")
    assert to_framework(np.ones(3), "numpy", "float16", "cpu").dtype == np.float16
