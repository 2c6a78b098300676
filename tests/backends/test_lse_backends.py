"""The log-sum-exp (lse = true) from numpy-naive, torch-naive and numpy-flash, through the worker
as `attnbench check` runs them: each within the bound of the oracle's lse, and the three alike."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from attnbench.backends.numpy_flash import NumpyFlash
from attnbench.backends.numpy_naive import NumpyNaive
from attnbench.backends.torch_naive import TorchNaive

from attnbench.case import Case
from attnbench.run.execute import CaseData, Options, execute
from attnbench.verify.inputs import make_inputs

BACKENDS = {"numpy-naive": NumpyNaive(), "torch-naive": TorchNaive(),
            "numpy-flash": NumpyFlash()}
CASES = [
    Case(2, 4, 2, 31, 9, 16, mask="causal", lse=True),  # Lq > Lk: rows that see no key
    Case(3, 2, 1, 33, 47, 16, mask="causal", q_lens=(33, 0, 10), kv_lens=(47, 5, 0), lse=True),
    Case(2, 4, 1, 70, 90, 16, mask="causal", window_left=20, alibi=True, softcap=5.0,
         kv_lens=(90, 60), head_dim_v=8, lse=True),
    Case(1, 2, 2, 40, 40, 16, bias="head", scale=0.3, lse=True),
    Case(2, 4, 2, 3, 40, 16, mask="causal", kv_lens=(40, 9), layout="paged", page_size=16,
         lse=True),
    Case(2, 4, 2, 12, 20, 16, mask="causal", sinks=True, kv_lens=(20, 0), lse=True),
]
DTYPES = ("float64", "float32", "float16", "bfloat16")


@cache
def data(case: Case) -> CaseData:
    return CaseData(case, seed=0)


def lse_entry(rec: dict) -> dict:
    assert rec["status"] == "ok", (rec.get("error"), rec.get("reasons"), rec.get("agreement"))
    found = [o for o in rec["agreement"]["outputs"] if o["name"] == "lse"]
    assert len(found) == 1, rec["agreement"]["outputs"]
    return found[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_lse_within_its_bound(name: str, case: Case, dtype: str):
    case = Case(**{**case.__dict__, "dtype": dtype})
    backend = BACKENDS[name]
    if backend.unsupported(case):
        pytest.skip("; ".join(backend.unsupported(case)))
    rec = execute(backend, "test", case, lambda: data(case), Options(time_it=False, memory=False))
    entry = lse_entry(rec)
    assert entry["passed"] and entry["nonfinite"] == 0, entry
    assert entry["error_over_bound"] < 0.5, entry  # well inside: a correct kernel's rounding
    assert entry["baseline_over_bound"] < 0.5, entry  # the live calibration, in the record
    assert entry["shape"] == [case.batch, case.heads_q, case.seq_q]


def test_timed_calls_ship_their_lse_too():
    case = CASES[0]
    rec = execute(NumpyNaive(), "test", case, lambda: data(case), Options(memory=False))
    assert lse_entry(rec)["passed"]
    timed = rec["agreement"]["timed_calls"]
    assert timed["checked"] >= 1 and timed["identical_to_first"] == timed["checked"]


@pytest.mark.parametrize("case", CASES[:4], ids=lambda c: c.id)
def test_the_three_backends_agree_with_each_other(case: Case):
    """float64: the lse arrays themselves, within a few units of float64 of one another."""
    case = Case(**{**case.__dict__, "dtype": "float64"})
    arrays = data(case).arrays
    got = {}
    for name, backend in BACKENDS.items():
        _, lse = backend.prepare(make_inputs(case, arrays, backend.framework))()
        got[name] = np.asarray(lse.numpy() if hasattr(lse, "numpy") else lse)
    first = got["numpy-naive"]
    for name, lse in got.items():
        assert np.array_equal(np.isneginf(lse), np.isneginf(first)), name
        np.testing.assert_allclose(lse[np.isfinite(first)], first[np.isfinite(first)],
                                   rtol=1e-12, atol=1e-12, err_msg=name)


class BareOutput(NumpyNaive):
    """numpy-naive returning its output alone where the case asks for (out, lse)."""

    name = "bare-output"

    def prepare(self, inputs):
        run = super().prepare(inputs)
        return lambda: run()[0]


def test_a_bare_output_through_the_worker_fails_naming_the_contract():
    case = CASES[0]
    rec = execute(BareOutput(), "test", case, lambda: data(case), Options(memory=False))
    assert rec["status"] == "mismatch"
    out, lse = rec["agreement"]["outputs"][:2]
    assert out["name"] == "out" and out["passed"]  # the output itself is still judged
    assert lse["name"] == "lse" and not lse["passed"]
    assert "returned a bare ndarray, not (out, lse)" in lse["error"]
    assert "float32 or float64, the natural log" in lse["error"]


class CachedResult(NumpyNaive):
    """numpy-naive computing (out, lse) once in prepare() and returning it on every call."""

    name = "cached-result"

    def prepare(self, inputs):
        result = super().prepare(inputs)()
        return lambda: result


def test_a_cached_out_and_lse_is_flagged_as_reused():
    case = CASES[0]
    rec = execute(CachedResult(), "test", case, lambda: data(case), Options(memory=False))
    assert lse_entry(rec)["passed"] and "reused_output" in rec.get("flags", [])


def test_repeat_compares_the_lse_bit_for_bit_too():
    case = CASES[0]
    rec = execute(NumpyNaive(), "test", case, lambda: data(case),
                  Options(time_it=False, memory=False, repeat=3))
    assert rec["determinism"]["compared"] == ["lse", "out"]
    assert rec["determinism"]["bitwise_identical"] is True
