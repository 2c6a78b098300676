"""Seeded inputs: reproducible, standard normal, exact in the case dtype, shared by fwd and bwd."""

from __future__ import annotations

import numpy as np
import pytest

from attnbench.case import Case
from attnbench.verify.inputs import case_seed, make_inputs, quantize, reference_arrays


def test_inputs_are_seeded_normal_and_shared():
    c = Case(2, 4, 2, 64, 48, 16)
    a, b = reference_arrays(c, 0), reference_arrays(c, 0)
    assert all(np.array_equal(a[n], b[n]) for n in "qkv")
    assert not np.array_equal(a["q"], reference_arrays(c, 1)["q"])
    assert a["q"].shape == (2, 4, 64, 16) and a["k"].shape == a["v"].shape == (2, 2, 48, 16)
    assert abs(a["q"].mean()) < 0.1 and 0.9 < a["q"].std() < 1.1 and np.all(a["q"] != 0)
    bwd = Case(**{**c.to_dict(), "mode": "bwd"})
    assert case_seed(bwd, 0) == case_seed(c, 0)  # fwd and bwd of one shape share inputs


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_reference_arrays_are_exact_in_the_dtype(dtype: str):
    if dtype == "bfloat16":
        pytest.importorskip("torch")
    arrays = reference_arrays(Case(1, 2, 2, 8, 8, 4, dtype=dtype), 3)
    for x in arrays.values():
        assert x.dtype == np.float64 and np.array_equal(quantize(x, dtype), x)


def test_make_inputs_converts_to_the_framework():
    torch = pytest.importorskip("torch")
    c = Case(1, 2, 1, 4, 6, 8, dtype="bfloat16", mask="causal")
    inputs = make_inputs(c, reference_arrays(c, 0), "torch")
    assert inputs.q.dtype == torch.bfloat16 and tuple(inputs.k.shape) == (1, 1, 6, 8)
    assert inputs.scale == c.softmax_scale and inputs.causal_offset == 2
    n = make_inputs(Case(1, 1, 1, 2, 2, 4), reference_arrays(Case(1, 1, 1, 2, 2, 4), 0), "numpy")
    assert n.q.dtype == np.float32 and n.q.flags.c_contiguous


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_a_backend_never_shares_memory_with_the_shared_arrays(framework: str):
    """Even in float64 on the CPU (where a conversion could be a no-op), inputs are copies."""
    if framework == "torch":
        pytest.importorskip("torch")
    c = Case(1, 2, 2, 8, 8, 4, dtype="float64")
    arrays = reference_arrays(c, 0)
    pristine = {n: a.copy() for n, a in arrays.items()}
    inputs = make_inputs(c, arrays, framework)
    for n in "qkv":
        getattr(inputs, n)[...] = 0
    assert all(np.array_equal(arrays[n], pristine[n]) for n in "qkv")
