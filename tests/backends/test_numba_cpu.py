"""numba-cpu (backends/numba_cpu.py, numba_kernel.py) against the float64 oracle: plain cases and
every declared variant, with the shipped tiles and with tiny tiles (every tile-boundary path)."""

from __future__ import annotations

import numpy as np
import pytest
from cpu_cases import PLAIN, VARIANT, check, with_dtype

from attnbench.case import Case
from attnbench.plugin.backend import import_failure

pytestmark = pytest.mark.skipif(import_failure("numba") is not None, reason="numba missing")
CASES = with_dtype(PLAIN + VARIANT, "float32") + with_dtype(PLAIN[:3] + VARIANT, "float64")


@pytest.fixture
def backend():
    from attnbench.backends.numba_cpu import NumbaCPU

    return NumbaCPU()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_agrees_with_oracle(backend, case: Case):
    check(backend, case)


@pytest.mark.parametrize("case", with_dtype(PLAIN + VARIANT, "float32"), ids=lambda c: c.id)
def test_agrees_with_tiny_tiles(backend, case: Case, monkeypatch):
    from attnbench.backends import numba_cpu

    monkeypatch.setattr(numba_cpu, "TILE_Q", 8)
    monkeypatch.setattr(numba_cpu, "TILE_K", 16)
    check(backend, case)


@pytest.mark.parametrize("case", with_dtype(PLAIN[:2] + VARIANT[-3:], "float32"),
                         ids=lambda c: c.id)
def test_parallel_kernel_on_small_cases_too(backend, case: Case, monkeypatch):
    """Small cases take the serial kernel; the parallel one must agree on them as well."""
    from attnbench.backends import numba_cpu

    monkeypatch.setattr(numba_cpu, "SERIAL_WORK", 0)
    check(backend, case)


def test_declares_every_variant_it_runs(backend):
    used = {v for c in VARIANT for v in c.variants}
    assert used == set(backend.capabilities.variants)


def test_bias_and_layouts_are_unsupported_with_a_reason(backend):
    case = Case(1, 2, 2, 8, 8, 16, bias="head")
    assert any("bias" in r for r in backend.unsupported(case))


def test_fast_exp_is_accurate_and_exact_at_minus_inf():
    """The float32 polynomial exp against np.exp in float64, including -inf -> 0."""
    from attnbench.backends.numba_cpu import kernel_module

    nk = kernel_module()
    c, ic = nk.exp_constants(np.float32)
    x = np.concatenate([-np.linspace(0, 90, 5001), [-np.inf, -1e30]]).astype(np.float32)
    got = x.copy()
    total = nk.row_exp(got, np.float32(0), np.empty(x.size, np.int32), c, ic)
    want = np.exp(x.astype(np.float64))
    assert got[-2] == 0 and got[-1] == 0
    rel = np.abs(got - want) / np.maximum(want, np.finfo(np.float32).tiny)
    assert rel[want > 1e-37].max() < 5e-7  # about 4 float32 ulps (1.19e-7 each)
    assert abs(total - want.sum()) <= 1e-6 * want.sum()


def test_parallel_and_serial_kernels_have_their_own_cache_entries():
    """Compiled from one function, the parallel and the serial kernel once shared one on-disk
    cache entry (Numba files it by name and line, not by flags): a process loaded whichever was
    saved first, and the parallel kernel ran on one core. Each must have its own index file."""
    from attnbench.backends import numba_cpu

    nk = numba_cpu.kernel_module()
    paths = {f.__name__: f._cache._cache_file._index_path
             for f in (nk.attention, nk.attention_serial)}
    assert paths["attention"] != paths["attention_serial"], paths


WHAT_RAN = """
import json, sys
from attnbench.backends.numba_cpu import NumbaCPU
from attnbench.case import Case
from attnbench.run.execute import CaseData
from attnbench.verify.inputs import make_inputs
case = Case(1, 2, 2, 20, 20, 16, mask="causal")  # small: the serial kernel
inputs = make_inputs(case, CaseData(case, seed=0).arrays, "numpy")
run = NumbaCPU().prepare(inputs)
run()
print(json.dumps(inputs.reported))
"""


@pytest.mark.process
def test_reports_cache_hit_and_threading_layer(tmp_path, backend):
    """A fresh cache folder: the first process compiles (cache_hit False), the second loads
    what the first saved (True). The serial kernel names no threading layer; the parallel one
    names numba's, as numba.threading_layer() reads it after the call."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    said = [json.loads(subprocess.run([sys.executable, "-c", WHAT_RAN], env=env, check=True,
                                      capture_output=True, text=True).stdout.splitlines()[-1])
            for _ in range(2)]
    assert said == [{"cache_hit": False, "threading_layer": None},
                    {"cache_hit": True, "threading_layer": None}]
    import numba

    from attnbench.run.execute import CaseData
    from attnbench.verify.inputs import make_inputs

    case = Case(1, 4, 4, 1024, 1024, 16)  # 4.2M pairs, over SERIAL_WORK: the parallel kernel
    inputs = make_inputs(case, CaseData(case, seed=0).arrays, "numpy")
    backend.prepare(inputs)()
    assert inputs.reported["threading_layer"] == numba.threading_layer()
    assert inputs.reported["threading_layer"] in ("omp", "tbb", "workqueue")
    assert type(inputs.reported["cache_hit"]) is bool
